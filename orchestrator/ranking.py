"""Ranking variants across benchmarks with paired bootstrap intervals (DESIGN.md "Ranking").

Per benchmark a variant has its primary metric, kept per evaluation item (`ItemScores`). One
bootstrap resample draws the benchmark's items with replacement; every variant is scored on
the same draw (paired), so a difference to the reference is resampled as a difference. One
resample of the whole leaderboard draws each benchmark independently (they are separate test
sets). From the resamples:

- each variant's metric and its difference to the reference: 95% percentile intervals;
- a two-sided bootstrap p-value per difference, Holm-corrected over each variant's benchmarks;
  significant when the corrected p is below alpha (uncorrected, p < 0.05 is the same as the 95%
  interval of the difference excluding 0);
- aggregate = mean over benchmarks of metric / reference metric (and of the difference), with
  its interval from the same resamples; mean rank over benchmarks (1 = best, ties averaged).

A benchmark a variant lacks is NaN, left out of its aggregate and mean rank (and named in the
frame's notes). Everything is arrays: one matrix product per benchmark scores every variant on
every resample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clipsweep.trainers.evaluation.metrics import ItemScores


@dataclass(frozen=True)
class BootstrapSettings:
    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95  # interval coverage
    alpha: float = 0.05  # family-wise error rate per variant (Holm over its benchmarks)


def resample_counts(n_items: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(R, N) float32: how often each item is drawn in each resample of N draws with replacement."""
    draws = rng.integers(0, n_items, size=(n_resamples, n_items))
    flat = (np.arange(n_resamples)[:, None] * n_items + draws).ravel()
    return np.bincount(flat, minlength=n_resamples * n_items).reshape(n_resamples, n_items).astype(np.float32)


def resampled_metrics(counts: np.ndarray, scores: Sequence[ItemScores]) -> np.ndarray:
    """(R, V): each variant's metric on each resample (rows of `counts`), paired across variants."""
    hits = np.concatenate([s.hits for s in scores], axis=1)
    totals = np.concatenate([s.counts for s in scores], axis=1)
    # float32 sums of 0/1 (or small integer) values are exact below 2**24 items.
    with np.errstate(invalid="ignore", divide="ignore"):
        parts = (counts @ hits) / (counts @ totals)  # NaN where a part has no item in the resample
    bounds = np.cumsum([0] + [s.hits.shape[1] for s in scores])
    with np.errstate(invalid="ignore"):
        return np.stack([_nanmean(parts[:, a:b], axis=1) for a, b in zip(bounds[:-1], bounds[1:])], axis=1)


def bootstrap_p(differences: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-values of "difference = 0" along axis 0 (NaN resamples ignored).

    p = 2 min(P(d <= 0), P(d >= 0)), each with the usual +1 so that p is never 0.
    """
    finite = np.isfinite(differences)
    n = finite.sum(0)
    below = ((differences <= 0) & finite).sum(0)
    above = ((differences >= 0) & finite).sum(0)
    p = 2 * np.minimum(below + 1, above + 1) / (n + 1)
    return np.where(n > 0, np.minimum(p, 1.0), np.nan)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values along the last axis; NaN entries are not tests and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    for row in np.ndindex(p.shape[:-1]):
        tested = np.flatnonzero(np.isfinite(p[row]))
        order = tested[np.argsort(p[row][tested], kind="stable")]
        m = len(order)
        steps = np.maximum.accumulate((m - np.arange(m)) * p[row][order])
        adjusted[row + (order,)] = np.minimum(steps, 1.0)
    return adjusted


def mean_ranks(metrics: np.ndarray) -> np.ndarray:
    """(V,) mean over benchmarks of each variant's rank (1 = best, ties averaged, NaN skipped)."""
    ranks = pd.DataFrame(metrics).rank(axis=0, ascending=False, method="average").to_numpy()
    return _nanmean(ranks, axis=1)


@dataclass(frozen=True)
class Ranking:
    """The ranked variants and what a reader must know to read them.

    Attributes:
        frame: one row per variant, best aggregate first; per benchmark B the columns `B`,
            `B_lo`, `B_hi`, `B_diff`, `B_diff_lo`, `B_diff_hi`, `B_p`, `B_p_holm`, `B_sig`
            (+1 significantly better than the reference, -1 worse, 0 neither); then
            `aggregate` (mean of metric / reference) with `_lo`/`_hi` and `aggregate_p` (of
            "aggregate = 1"), `aggregate_diff` (mean difference) with its interval, `mean_rank`,
            `benchmarks_scored`, `missing`.
        benchmarks: the benchmark columns, in order.
        reference: the variant everything is normalised against.
        notes: method statement and footnotes (missing benchmarks, reference choice).
    """

    frame: pd.DataFrame
    benchmarks: tuple[str, ...]
    reference: str
    notes: tuple[str, ...]


def rank_variants(
    items: Mapping[str, Mapping[str, ItemScores]],
    reference: str,
    benchmarks: Sequence[str],
    settings: BootstrapSettings = BootstrapSettings(),
) -> Ranking:
    """Ranks `items[variant][benchmark]` against `reference` (see the module docstring).

    Raises:
        ValueError: an unknown reference, or variants scored on different item counts of a benchmark.
    """
    variants = list(items)
    if reference not in items:
        raise ValueError(f"reference={reference!r} is not among the variants ({', '.join(variants)})")
    ref = variants.index(reference)
    rng = np.random.default_rng(settings.seed)
    n_v, n_b, n_r = len(variants), len(benchmarks), settings.n_resamples
    point = np.full((n_v, n_b), np.nan)
    boot = np.full((n_r, n_v, n_b), np.nan)
    for b, bench in enumerate(benchmarks):
        present = [v for v, name in enumerate(variants) if bench in items[name]]
        if not present:
            continue
        scores = [items[variants[v]][bench] for v in present]
        sizes = {len(s.hits) for s in scores}
        if len(sizes) > 1:
            raise ValueError(f"benchmark {bench!r}: variants were scored on different item counts {sorted(sizes)}")
        point[present, b] = [s.value() for s in scores]
        boot[:, present, b] = resampled_metrics(resample_counts(sizes.pop(), n_r, rng), scores)

    interval = lambda x: _interval(x, settings.level)  # noqa: E731
    diff_point = point - point[ref]
    diff_boot = boot - boot[:, ref : ref + 1]
    p = bootstrap_p(diff_boot)
    p[ref] = np.nan  # the reference is not tested against itself
    p_holm = holm(p)
    significant = np.where(p_holm < settings.alpha, np.sign(diff_point), 0).astype(int)

    with np.errstate(invalid="ignore", divide="ignore"):
        usable = point[ref] > 0  # a reference metric of 0 cannot normalise
        ratio_point = np.where(usable, point / point[ref], np.nan)
        ratio_boot = np.where(usable & (boot[:, ref : ref + 1] > 0), boot / boot[:, ref : ref + 1], np.nan)
    aggregate = _nanmean(ratio_point, axis=1)
    aggregate_boot = _nanmean(ratio_boot, axis=2)
    aggregate_ci = interval(aggregate_boot)
    aggregate_p = bootstrap_p(aggregate_boot - 1)  # the aggregate's own test: ratio = 1
    aggregate_p[ref] = np.nan
    aggregate_diff = _nanmean(np.where(usable, diff_point, np.nan), axis=1)
    aggregate_diff_ci = interval(_nanmean(np.where(usable, diff_boot, np.nan), axis=2))

    columns: dict[str, object] = {"variant": variants}
    metric_ci, diff_ci = interval(boot), interval(diff_boot)
    for b, bench in enumerate(benchmarks):
        columns.update({
            bench: point[:, b], f"{bench}_lo": metric_ci[0][:, b], f"{bench}_hi": metric_ci[1][:, b],
            f"{bench}_diff": diff_point[:, b], f"{bench}_diff_lo": diff_ci[0][:, b], f"{bench}_diff_hi": diff_ci[1][:, b],
            f"{bench}_p": p[:, b], f"{bench}_p_holm": p_holm[:, b], f"{bench}_sig": significant[:, b],
        })  # fmt: skip
    missing = [[bench for b, bench in enumerate(benchmarks) if np.isnan(point[v, b])] for v in range(n_v)]
    columns.update({
        "aggregate": aggregate, "aggregate_lo": aggregate_ci[0], "aggregate_hi": aggregate_ci[1],
        "aggregate_diff": aggregate_diff, "aggregate_diff_lo": aggregate_diff_ci[0], "aggregate_diff_hi": aggregate_diff_ci[1],
        "aggregate_p": aggregate_p, "mean_rank": mean_ranks(point), "benchmarks_scored": [n_b - len(m) for m in missing],
        "missing": [", ".join(m) for m in missing],
    })  # fmt: skip
    frame = pd.DataFrame(columns).sort_values(["aggregate", "mean_rank"], ascending=[False, True], na_position="last")

    level = f"{settings.level:.0%}"
    notes = [
        f"Intervals: {level} percentile, paired bootstrap over evaluation items ({n_r:,} resamples, seed {settings.seed}). "
        f"Significant (▲ better / ▼ worse than {reference}): two-sided bootstrap p-value, Holm-corrected over each "
        f"variant's {n_b} benchmarks, below {settings.alpha:g}. Aggregate: mean over benchmarks of metric / {reference}'s."
    ]
    notes += [f"{variants[v]}: no result for {', '.join(m)}; left out of its aggregate and mean rank." for v, m in enumerate(missing) if m]
    notes += [f"{bench}: {reference} scores 0, so it is left out of every aggregate." for b, bench in enumerate(benchmarks) if point[ref, b] == 0]  # fmt: skip
    return Ranking(frame.reset_index(drop=True), tuple(benchmarks), reference, tuple(notes))


def _interval(resamples: np.ndarray, level: float) -> np.ndarray:
    """(2, ...) percentile interval along axis 0; NaN where there is no resample."""
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: missing benchmarks
        return np.nanpercentile(resamples, [tail, 100 - tail], axis=0)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN; NaN (without a warning) where a slice has no number."""
    finite = np.isfinite(x)
    total = np.where(finite, x, 0.0).sum(axis)
    n = finite.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)
