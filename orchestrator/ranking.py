"""Ranking variants across benchmarks, with intervals that hold training and test-set noise.

DESIGN.md "Ranking". A variant is trained with k seeds and each run is scored per evaluation
item (`ItemScores`), so a metric has two sources of noise: training (initial weights, data
order, crops: the spread over seeds) and the finite test set (which items were drawn). For a
variant v with k_v seeds and the reference r, per benchmark and for the aggregate:

- metric: the mean over seeds; difference: mean_v - mean_r;
- variance of the difference = s_v^2 / k_v + s_r^2 / k_r (seed variance of each mean) + the
  items' variance of the paired difference. The item part comes from a bootstrap over items
  (every run of every variant scored on the same draw), less the per-item seed noise that
  s^2 already holds (a variance-components estimate, so nothing is counted twice);
- a 95% Welch t interval with Satterthwaite's degrees of freedom (with 3 seeds a percentile
  bootstrap over seeds has 10 distinct means and shrinks their variance by (k - 1)/k: on the
  A/A runs of `benchmarks/aa_calibration.py` it called the aggregate significant 14.5% of the
  time, this test 4.0%);
- significance: two-sided p from the same t, Holm-corrected over each variant's benchmarks;
  the aggregate (mean over benchmarks of the primary metric, DataComp's "average") is its
  own test;
- the seed standard deviation, and P(v > r): the share of (seed of v, seed of r) pairs in
  which v scores higher (ties count half).

A variant or reference with one seed has no seed variance to measure: the comparison falls
back to items only (a normal interval of the bootstrap variance), and says so (`interval`).
A benchmark a variant lacks is NaN, left out of its aggregate and mean rank (and named in the
notes). One matrix product per benchmark scores every run on every resample.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

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
    # float32 sums of 0/1 (or small integer) values are exact below 2**24 items.
    if all(s.counts is scores[0].counts or np.array_equal(s.counts, scores[0].counts) for s in scores):
        # The usual case (same labels, same captions per image): one product serves every run.
        totals = np.tile(counts @ scores[0].counts, len(scores))
    else:
        totals = counts @ np.concatenate([s.counts for s in scores], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        parts = (counts @ hits) / totals  # NaN where a part has no item in the resample
    bounds = np.cumsum([0] + [s.hits.shape[1] for s in scores])
    with np.errstate(invalid="ignore"):
        return np.stack([_nanmean(parts[:, a:b], axis=1) for a, b in zip(bounds[:-1], bounds[1:])], axis=1)


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
        frame: one row per variant, best aggregate difference first; per benchmark B the
            columns `B` (mean over seeds), `B_lo`, `B_hi`, `B_diff`, `B_diff_lo`, `B_diff_hi`,
            `B_p`, `B_p_holm`, `B_sig` (+1 significantly better than the reference, -1 worse,
            0 neither), `B_seed_sd`, `B_p_better`; the same for `aggregate` (mean over
            benchmarks of the primary metric; `aggregate_sig` from its own p, no Holm); then
            `mean_rank`, `seeds`, `interval` (`seeds + items` or `items only`),
            `benchmarks_scored`, `missing`.
        benchmarks: the benchmark columns, in order.
        reference: the variant everything is compared with.
        notes: method statement and footnotes (missing benchmarks, seeds, reference choice).
        seed_aggregates: each variant's aggregate per seed, for the pictures.
    """

    frame: pd.DataFrame
    benchmarks: tuple[str, ...]
    reference: str
    notes: tuple[str, ...]
    seed_aggregates: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)


Runs = Mapping[str, ItemScores] | Sequence[Mapping[str, ItemScores]]  # one seed's scores, or one per seed


@dataclass(frozen=True)
class _Arm:
    """One variant on one benchmark (or the aggregate): its seeds' metrics and resamples."""

    point: np.ndarray  # (k,) each seed's metric
    boot: np.ndarray  # (R, k) each seed's metric on each item resample

    @property
    def k(self) -> int:
        return len(self.point)

    @property
    def mean(self) -> float:
        return float(self.point.mean())

    @property
    def seed_term(self) -> float:
        """s^2 / k: the variance that training adds to the mean over seeds (k - 1 degrees of freedom)."""
        return float(self.point.var(ddof=1)) / self.k

    @property
    def item_noise(self) -> float:
        """The per-item seed noise in the bootstrap variance of the mean over seeds.

        Each seed's bootstrap variance holds the items' variance plus that seed's own per-item
        noise; the mean over seeds holds 1/k of the latter. Their gap, scaled, is that 1/k. It
        is in s^2 / k too, so the item term leaves it out: nothing is counted twice. (Moving it
        from the seed term to the item term instead would give it the items' degrees of
        freedom; with 2 seeds that covered 91% in place of 95%, so the seed term keeps it.)"""
        within = float(np.mean(self.boot.var(axis=0)))
        return max(0.0, (within - float(self.boot.mean(axis=1).var())) / (self.k - 1)) if self.k > 1 else 0.0


def _interval_t(estimate: float, seed_terms: list[tuple[float, int]], item_var: float, level: float) -> tuple[float, float, float]:
    """(lo, hi, p of "= 0") of a Welch t interval: variance = sum of seed terms + item_var.

    Satterthwaite's degrees of freedom count the seed terms (k - 1 each); the item term comes
    from 1,000 resamples of thousands of items, so it adds none. No seed term: a normal interval.
    """
    variance = item_var + sum(term for term, _ in seed_terms)
    se = math.sqrt(max(variance, 0.0))
    if se == 0:
        return estimate, estimate, 1.0 if estimate == 0 else 0.0
    spread = sum(term**2 / (k - 1) for term, k in seed_terms)
    df = variance**2 / spread if spread > 0 else math.inf
    quantile = float(stats.t.ppf(0.5 + level / 2, df)) if math.isfinite(df) else float(stats.norm.ppf(0.5 + level / 2))
    tail = stats.t.sf(abs(estimate) / se, df) if math.isfinite(df) else stats.norm.sf(abs(estimate) / se)
    return estimate - quantile * se, estimate + quantile * se, float(min(1.0, 2 * tail))


def _estimate(arm: _Arm, level: float) -> tuple[float, float]:
    """The interval of one variant's mean over seeds (seed and item noise)."""
    item = float(arm.boot.mean(axis=1).var())
    if arm.k < 2:
        return _interval_t(arm.mean, [], item, level)[:2]
    return _interval_t(arm.mean, [(arm.seed_term, arm.k)], max(0.0, item - arm.item_noise), level)[:2]


def _compare(arm: _Arm, ref: _Arm, level: float) -> tuple[float, float, float, float, bool]:
    """(difference, lo, hi, p, seeds counted) of arm - ref, items paired across the two."""
    diff = arm.mean - ref.mean
    item = float((arm.boot.mean(axis=1) - ref.boot.mean(axis=1)).var())
    if arm.k < 2 or ref.k < 2:  # a side without seed variance: items only, and marked so
        return (diff, *_interval_t(diff, [], item, level), False)
    item = max(0.0, item - arm.item_noise - ref.item_noise)
    return (diff, *_interval_t(diff, [(arm.seed_term, arm.k), (ref.seed_term, ref.k)], item, level), True)


def _p_better(arm: _Arm, ref: _Arm) -> float:
    """Share of (seed of arm, seed of ref) pairs in which arm scores higher; ties count half."""
    a, b = arm.point[:, None], ref.point[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def rank_variants(
    items: Mapping[str, Runs],
    reference: str,
    benchmarks: Sequence[str],
    settings: BootstrapSettings = BootstrapSettings(),
) -> Ranking:
    """Ranks `items[variant]` (one {benchmark: ItemScores} per seed) against `reference`.

    See the module docstring. A variant given as a single mapping has one seed.

    Raises:
        ValueError: an unknown reference, or runs scored on different item counts of a benchmark.
    """
    runs = {name: [value] if isinstance(value, Mapping) else list(value) for name, value in items.items()}
    variants = list(runs)
    if reference not in runs:
        raise ValueError(f"reference={reference!r} is not among the variants ({', '.join(variants)})")
    rng = np.random.default_rng(settings.seed)
    n_v, n_b, n_r = len(variants), len(benchmarks), settings.n_resamples
    n_s = max(len(r) for r in runs.values())
    point = np.full((n_v, n_s, n_b), np.nan)  # seeds a variant lacks stay NaN
    boot = np.full((n_r, n_v, n_s, n_b), np.nan)
    for b, bench in enumerate(benchmarks):
        cells = [(v, s) for v, name in enumerate(variants) for s, run in enumerate(runs[name]) if bench in run]
        if not cells:
            continue
        scores = [runs[variants[v]][s][bench] for v, s in cells]
        sizes = {len(sc.hits) for sc in scores}
        if len(sizes) > 1:
            raise ValueError(f"benchmark {bench!r}: runs were scored on different item counts {sorted(sizes)}")
        v_index, s_index = np.array(cells).T
        point[v_index, s_index, b] = [sc.value() for sc in scores]
        boot[:, v_index, s_index, b] = resampled_metrics(resample_counts(sizes.pop(), n_r, rng), scores)

    ref = variants.index(reference)
    present = ~np.all(np.isnan(point), axis=1)  # (V, B): a benchmark some seed of the variant has

    def arm(v: int, b: int | None, over: np.ndarray | None = None) -> _Arm:
        """Variant v on benchmark b, or (b None) its aggregate over the benchmarks `over`."""
        if b is None:
            seeds_point, seeds_boot = point[v][:, over].mean(axis=1), boot[:, v][:, :, over].mean(axis=2)
        else:
            seeds_point, seeds_boot = point[v, :, b], boot[:, v, :, b]
        kept = np.isfinite(seeds_point)
        return _Arm(seeds_point[kept], seeds_boot[:, kept])

    columns: dict[str, list[Any]] = {"variant": variants}
    rows: list[dict[str, Any]] = [{} for _ in variants]
    seeds_counted = np.ones(n_v, dtype=bool)
    seed_aggregates: dict[str, tuple[float, ...]] = {}
    for v in range(n_v):
        for b, bench in enumerate([*benchmarks, "aggregate"]):
            if bench == "aggregate":
                over = present[v] & present[ref]
                if not over.any():
                    rows[v].update(_empty("aggregate"))
                    continue
                mine, theirs = arm(v, None, over), arm(ref, None, over)
                seed_aggregates[variants[v]] = tuple(arm(v, None, present[v]).point.tolist())
            elif not (present[v, b] and present[ref, b]):
                rows[v].update(_empty(bench, arm(v, b) if present[v, b] else None, settings.level))
                continue
            else:
                mine, theirs = arm(v, b), arm(ref, b)
            own = arm(v, None, present[v]) if bench == "aggregate" else mine  # the variant's own aggregate: all its benchmarks
            diff, lo, hi, p, counted = _compare(mine, theirs, settings.level) if v != ref else (0.0, np.nan, np.nan, np.nan, True)
            seeds_counted[v] &= counted
            rows[v].update({
                bench: own.mean, **dict(zip((f"{bench}_lo", f"{bench}_hi"), _estimate(own, settings.level))),
                f"{bench}_diff": diff, f"{bench}_diff_lo": lo, f"{bench}_diff_hi": hi,
                f"{bench}_p": p,
                f"{bench}_seed_sd": float(own.point.std(ddof=1)) if own.k > 1 else np.nan,
                f"{bench}_p_better": np.nan if v == ref else _p_better(mine, theirs),
            })  # fmt: skip

    p = np.array([[row.get(f"{bench}_p", np.nan) for bench in benchmarks] for row in rows], dtype=float).reshape(n_v, n_b)
    p_holm = holm(p)
    seed_means = np.array([[row[bench] for bench in benchmarks] for row in rows], dtype=float).reshape(n_v, n_b)
    for v, row in enumerate(rows):
        for b, bench in enumerate(benchmarks):
            row[f"{bench}_p_holm"] = p_holm[v, b]
            row[f"{bench}_sig"] = int(np.sign(row[f"{bench}_diff"])) if p_holm[v, b] < settings.alpha else 0  # NaN p: never
        aggregate_p = row.get("aggregate_p", np.nan)
        row["aggregate_sig"] = int(np.sign(row["aggregate_diff"])) if aggregate_p < settings.alpha else 0

    fields = ["", "_lo", "_hi", "_diff", "_diff_lo", "_diff_hi", "_p", "_p_holm", "_sig", "_seed_sd", "_p_better"]
    for bench in [*benchmarks, "aggregate"]:
        for suffix in fields:
            if bench == "aggregate" and suffix == "_p_holm":
                continue
            columns[f"{bench}{suffix}"] = [row.get(f"{bench}{suffix}", np.nan) for row in rows]
    missing = [[bench for b, bench in enumerate(benchmarks) if not present[v, b]] for v in range(n_v)]
    seed_counts = [int(np.isfinite(point[v]).any(axis=1).sum()) for v in range(n_v)]
    columns.update({
        "mean_rank": mean_ranks(seed_means), "seeds": seed_counts,
        "interval": ["seeds + items" if counted else "items only" for counted in seeds_counted],
        "benchmarks_scored": [n_b - len(m) for m in missing], "missing": [", ".join(m) for m in missing],
    })  # fmt: skip
    frame = pd.DataFrame(columns).sort_values(["aggregate_diff", "mean_rank"], ascending=[False, True], na_position="last")
    notes = _notes(variants, reference, benchmarks, settings, seed_counts, seeds_counted, missing)
    return Ranking(frame.reset_index(drop=True), tuple(benchmarks), reference, tuple(notes), seed_aggregates)


def _empty(bench: str, own: _Arm | None = None, level: float = 0.95) -> dict[str, float]:
    """A benchmark that cannot be compared: the variant's own metric if it has one, else NaN."""
    if own is None:
        return {bench: np.nan}
    lo, hi = _estimate(own, level)
    return {bench: own.mean, f"{bench}_lo": lo, f"{bench}_hi": hi, f"{bench}_seed_sd": float(own.point.std(ddof=1)) if own.k > 1 else np.nan}


def _notes(
    variants: list[str],
    reference: str,
    benchmarks: Sequence[str],
    settings: BootstrapSettings,
    seed_counts: list[int],
    seeds_counted: np.ndarray,
    missing: list[list[str]],
) -> list[str]:
    level = f"{settings.level:.0%}"
    notes = [
        f"Intervals: {level} Welch t over seeds and items. Each variant's metric is the mean over its seeds; the "
        f"variance of its difference to {reference} adds both means' seed variance and the items' variance of the "
        f"paired difference ({settings.n_resamples:,} bootstrap resamples, seed {settings.seed}). Significant (▲ better / "
        f"▼ worse): two-sided p, Holm-corrected over each variant's {len(benchmarks)} benchmarks, below {settings.alpha:g}. "
        f"Aggregate: mean over benchmarks of the primary metric; its difference is in points, tested on its own."
    ]
    if max(seed_counts) == 1:
        notes.append(
            "Training variance is not included: every variant was trained once (leaderboard.seeds: 1), so the "
            "intervals hold test-set noise only and a re-run may well reverse a marked difference."
        )
    else:
        counts = ", ".join(f"{name} {k}" for name, k in zip(variants, seed_counts))
        notes.append(f"Seeds per variant: {counts}.")
        item_only = [name for name, counted in zip(variants, seeds_counted) if not counted]
        if item_only:
            why = f"{reference} has one seed" if seed_counts[variants.index(reference)] < 2 else "one seed"
            notes.append(
                f"{', '.join(item_only)}: items only ({why}); training variance is not included in their intervals."
            )
    notes += [f"{variants[v]}: no result for {', '.join(m)}; left out of its aggregate and mean rank." for v, m in enumerate(missing) if m]
    return notes


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN; NaN (without a warning) where a slice has no number."""
    finite = np.isfinite(x)
    total = np.where(finite, x, 0.0).sum(axis)
    n = finite.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)
