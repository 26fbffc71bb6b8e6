"""Ranking variants across benchmarks, with intervals that hold training and test-set noise.

The method in full: docs/ranking.md. A variant is trained with several seeds and each run is
scored per evaluation item (`ItemScores`), so a metric has two sources of noise: training
(initial weights, data order, crops, caption draws: the spread over seeds) and the finite test
set (which items were drawn). Replicate i of every variant and of the reference is trained with
the same seed, so the two share much of their training noise (common random numbers). For a
variant v and the reference r, per benchmark and for the aggregate:

- metric: v's mean over its seeds;
- **paired** (at least 2 seeds both sides have): the per-seed difference d_i = v_i - r_i over
  the common seeds (each pair on the same items); the difference is mean(d), and its variance
  var(d) / n (training: whatever noise the two runs of a seed share cancels in d_i) plus the
  items' variance of mean(d) from a bootstrap over items (every run scored on the same draw),
  less the per-item seed noise that var(d) / n already holds (a variance-components estimate:
  nothing counted twice); a t interval with n - 1 degrees of freedom (the item part adds
  none: see `comparison.compare`); P(v > r) is the share of common seeds with d_i > 0 (ties half);
- **unpaired** (fewer than 2 common seeds, both sides with 2 or more): mean_v - mean_r with the
  Welch variance s_v^2 / k_v + s_r^2 / k_r plus the items' part; P(v > r) over all seed pairs;
- **items only** (a side with one seed): the items' bootstrap variance alone, said in every
  output: training variance is not measured;
- significance: two-sided p from that t, Holm over each variant's benchmarks; the aggregate
  (mean over benchmarks of the primary metric, DataComp's "average") is its own test;
- **verdict**: `better` (significant, > 0), `worse`, `equivalent` (the interval at the test's
  level lies inside +-margin: two one-sided tests, TOST) or `undecided`; and the minimum
  detectable effect at 80% power, (c + t_0.8) * se, in points;
- adaptive seeds (`looks=(min, max)`): the test's level at n common seeds is the
  group-sequential nominal level of `sequential.py`, so that the error over every look stays
  at alpha; intervals are then repeated confidence intervals.

Why t and not a percentile bootstrap over seeds: with 3 seeds that has 10 distinct means per
side and shrinks their variance by (k - 1)/k; on `benchmarks/aa_calibration.py`'s A/A runs it
called the aggregate significant 14.5% of the time, the t interval 4.0%. A benchmark a variant
lacks is NaN, left out of its aggregate and mean rank (and named in the notes). One matrix
product per benchmark scores every run on every resample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clipsweep.trainers.evaluation.metrics import ItemScores

from .comparison import Arm, Difference, compare, mean_interval
from .sequential import nominal_level


@dataclass(frozen=True)
class BootstrapSettings:
    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95  # interval coverage
    alpha: float = 0.05  # family-wise error rate per variant (Holm over its benchmarks)
    margin: float = 0.01  # equivalence margin, in metric units (leaderboard.margin_pts / 100)
    power: float = 0.8  # of the minimum detectable effect
    looks: tuple[int, int] | None = None  # (min, max) seeds of an adaptive race; None: one look

    def test_level(self, n: int, alpha: float | None = None) -> float:
        """The two-sided level at which a comparison with n common seeds is tested for an error
        rate `alpha` (default: self.alpha): alpha itself, or in a race look n's
        group-sequential nominal level."""
        alpha = self.alpha if alpha is None else alpha
        return alpha if self.looks is None else nominal_level(alpha, n, *self.looks)


def resample_counts(n_items: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(R, N) float32: how often each item is drawn in each resample of N draws with replacement."""
    draws = rng.integers(0, n_items, size=(n_resamples, n_items))
    flat = (np.arange(n_resamples)[:, None] * n_items + draws).ravel()
    return np.bincount(flat, minlength=n_resamples * n_items).reshape(n_resamples, n_items).astype(np.float32)


def resampled_metrics(counts: np.ndarray, scores: Sequence[ItemScores]) -> np.ndarray:
    """(R, V): each variant's metric on each resample (rows of `counts`), paired across variants."""
    shared = all(s.counts is scores[0].counts or np.array_equal(s.counts, scores[0].counts) for s in scores)
    if shared and scores[0].counts.shape[1] > 2 and (np.count_nonzero(scores[0].counts, axis=1) <= 1).all():
        return _one_part_per_item(counts, scores)
    hits = np.concatenate([s.hits for s in scores], axis=1)
    # float32 sums of 0/1 (or small integer) values are exact below 2**24 items.
    if shared:  # the usual case (same labels, same captions per image): one product serves every run
        totals = np.tile(counts @ scores[0].counts, len(scores))
    else:
        totals = counts @ np.concatenate([s.counts for s in scores], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        parts = (counts @ hits) / totals  # NaN where a part has no item in the resample
    bounds = np.cumsum([0] + [s.hits.shape[1] for s in scores])
    with np.errstate(invalid="ignore"):
        return np.stack([_nanmean(parts[:, a:b], axis=1) for a, b in zip(bounds[:-1], bounds[1:])], axis=1)


def _one_part_per_item(counts: np.ndarray, scores: Sequence[ItemScores]) -> np.ndarray:
    """`resampled_metrics` where each item counts toward one part (mean per-class recall: its
    class), the same parts for every run: per part, only its items' columns are multiplied, so
    the cost is R x N x V instead of R x N x (V x classes) (100 classes: 100x less)."""
    part = scores[0].counts.argmax(axis=1)  # (N,) an item with no count has weight 0 in part 0
    rows = np.arange(len(part))
    weight = scores[0].counts[rows, part]  # (N,)
    hits = np.stack([s.hits[rows, part] for s in scores], axis=1)  # (N, V): each item's hits in its part
    n_parts = scores[0].counts.shape[1]
    per_part = np.full((len(counts), len(scores), n_parts), np.nan)
    for p in range(n_parts):
        items = np.flatnonzero(part == p)
        total = counts[:, items] @ weight[items]  # (R,)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_part[:, :, p] = (counts[:, items] @ hits[items]) / total[:, None]  # NaN: no item of p drawn
    with np.errstate(invalid="ignore"):
        return _nanmean(per_part, axis=2)


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
            0 neither), `B_verdict` (better | worse | equivalent | undecided | reference),
            `B_mde_pts`, `B_seed_sd`, `B_p_better`; the same for `aggregate` (mean over
            benchmarks of the primary metric; its own test, no Holm); then `mean_rank`,
            `seeds`, `common_seeds` (seeds shared with the reference), `pairing` (paired |
            unpaired | items only), `interval` (`seeds + items` or `items only`),
            `benchmarks_scored`, `missing`.
        benchmarks: the benchmark columns, in order.
        reference: the variant everything is compared with.
        notes: method statement and footnotes (missing benchmarks, seeds, reference choice).
        seed_differences: per variant, each seed's aggregate minus the reference's (paired: its
            own seed's; unpaired: the reference's mean), for the pictures.
    """

    frame: pd.DataFrame
    benchmarks: tuple[str, ...]
    reference: str
    notes: tuple[str, ...]
    seed_differences: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)


SeedRuns = Mapping[str, ItemScores]  # one run's {benchmark: per-item scores}
Runs = SeedRuns | Sequence[SeedRuns] | Mapping[int, SeedRuns]  # one run (seed 0), one per seed 0.., or {seed: run}


def holm_reject(p: np.ndarray, level: Callable[[float], float]) -> np.ndarray:
    """Holm's step-down rule on one variant's benchmarks: the j-th smallest p (of m tests) is
    rejected while every smaller one was and p < level(alpha / (m - j)); `level` maps a
    family-wise share of alpha to the nominal level a test is run at. NaN: not a test."""
    reject = np.zeros(len(p), dtype=bool)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    for j, b in enumerate(order):
        if not p[b] < level(1.0 / (len(order) - j)):
            break
        reject[b] = True
    return reject


def rank_variants(
    items: Mapping[str, Runs],
    reference: str,
    benchmarks: Sequence[str],
    settings: BootstrapSettings = BootstrapSettings(),
) -> Ranking:
    """Ranks `items[variant]` against `reference`; see the module docstring.

    A variant's runs are `{seed: {benchmark: ItemScores}}`, a list (seed = position) or a single
    mapping (one run, seed 0). Runs are paired by seed, never by position in a mapping.

    Raises:
        ValueError: an unknown reference, or runs scored on different item counts of a benchmark.
    """
    runs = {name: _by_seed(value) for name, value in items.items()}
    variants = list(runs)
    if reference not in runs:
        raise ValueError(f"reference={reference!r} is not among the variants ({', '.join(variants)})")
    rng = np.random.default_rng(settings.seed)
    seeds = np.array(sorted({s for r in runs.values() for s in r}))
    column = {int(s): i for i, s in enumerate(seeds)}
    n_v, n_b, n_r, n_s = len(variants), len(benchmarks), settings.n_resamples, len(seeds)
    point = np.full((n_v, n_s, n_b), np.nan)  # (V, seeds, B): a seed a variant lacks stays NaN
    boot = np.full((n_r, n_v, n_s, n_b), np.nan)
    for b, bench in enumerate(benchmarks):
        cells = [(v, column[s]) for v, name in enumerate(variants) for s, run in runs[name].items() if bench in run]
        if not cells:
            continue
        scores = [runs[variants[v]][int(seeds[s])][bench] for v, s in cells]
        sizes = {len(sc.hits) for sc in scores}
        if len(sizes) > 1:
            raise ValueError(f"benchmark {bench!r}: runs were scored on different item counts {sorted(sizes)}")
        v_index, s_index = np.array(cells).T
        point[v_index, s_index, b] = [sc.value() for sc in scores]
        boot[:, v_index, s_index, b] = resampled_metrics(resample_counts(sizes.pop(), n_r, rng), scores)

    ref = variants.index(reference)
    present = ~np.all(np.isnan(point), axis=1)  # (V, B): a benchmark some seed of the variant has

    def arm(v: int, b: int | None, over: np.ndarray | None = None) -> Arm:
        """Variant v on benchmark b, or (b None) its aggregate over the benchmarks `over`."""
        if b is None:
            seeds_point, seeds_boot = point[v][:, over].mean(axis=1), boot[:, v][:, :, over].mean(axis=2)
        else:
            seeds_point, seeds_boot = point[v, :, b], boot[:, v, :, b]
        kept = np.isfinite(seeds_point)
        return Arm(seeds[kept], seeds_point[kept], seeds_boot[:, kept])

    rows: list[dict[str, Any]] = [{} for _ in variants]
    differences: list[dict[str, Difference]] = [{} for _ in variants]
    seed_differences: dict[str, tuple[float, ...]] = {}
    for v in range(n_v):
        for b, bench in enumerate([*benchmarks, "aggregate"]):
            if bench == "aggregate":
                over = present[v] & present[ref]
                if not over.any():
                    rows[v].update(_empty("aggregate"))
                    continue
                mine, theirs = arm(v, None, over), arm(ref, None, over)
                own = arm(v, None, present[v])  # the variant's own aggregate: all its benchmarks
            elif not (present[v, b] and present[ref, b]):
                rows[v].update(_empty(bench, arm(v, b) if present[v, b] else None, settings.level))
                continue
            else:
                mine = own = arm(v, b)
                theirs = arm(ref, b)
            rows[v].update({
                bench: own.mean, **dict(zip((f"{bench}_lo", f"{bench}_hi"), mean_interval(own, settings.level))),
                f"{bench}_seed_sd": float(own.point.std(ddof=1)) if own.k > 1 else np.nan,
            })  # fmt: skip
            if v == ref:
                continue
            differences[v][bench] = diff = compare(mine, theirs)
            # the interval shown is the one the verdict reads (a repeated confidence interval in a race)
            lo, hi = diff.interval(settings.test_level(diff.seeds, 1 - settings.level))
            rows[v].update({
                f"{bench}_diff": diff.estimate, f"{bench}_diff_lo": lo, f"{bench}_diff_hi": hi, f"{bench}_p": diff.p(),
                f"{bench}_p_better": diff.p_better,
                f"{bench}_mde_pts": 100 * diff.mde(settings.test_level(diff.seeds), settings.power),
            })  # fmt: skip
            if bench == "aggregate":
                seed_differences[variants[v]] = diff.per_seed or tuple((own.point - theirs.mean).tolist())
        if v == ref:  # its own spread around its mean
            own = arm(v, None, present[v])
            seed_differences[variants[v]] = tuple((own.point - own.mean).tolist())

    _decide(rows, differences, ref, benchmarks, settings)

    columns: dict[str, list[Any]] = {"variant": variants}
    fields = ["", "_lo", "_hi", "_diff", "_diff_lo", "_diff_hi", "_p", "_p_holm", "_sig", "_verdict", "_mde_pts", "_seed_sd", "_p_better"]
    for bench in [*benchmarks, "aggregate"]:
        for suffix in fields:
            if bench == "aggregate" and suffix == "_p_holm":
                continue
            empty = "" if suffix == "_verdict" else np.nan
            columns[f"{bench}{suffix}"] = [row.get(f"{bench}{suffix}", empty) for row in rows]
    missing = [[bench for b, bench in enumerate(benchmarks) if not present[v, b]] for v in range(n_v)]
    seed_counts = [int(np.isfinite(point[v]).any(axis=1).sum()) for v in range(n_v)]
    aggregates = [d.get("aggregate") for d in differences]
    own_pairing = "paired" if seed_counts[ref] > 1 else "items only"  # the reference's own row
    pairing = [own_pairing if v == ref else a.pairing if a is not None else "" for v, a in enumerate(aggregates)]
    seed_means = np.array([[row[bench] for bench in benchmarks] for row in rows], dtype=float).reshape(n_v, n_b)
    columns.update({
        "mean_rank": mean_ranks(seed_means), "seeds": seed_counts,
        "common_seeds": [seed_counts[v] if v == ref else a.seeds if a is not None and a.pairing == "paired" else 0
                         for v, a in enumerate(aggregates)],
        "pairing": pairing,
        "interval": ["items only" if p == "items only" else "seeds + items" for p in pairing],
        "benchmarks_scored": [n_b - len(m) for m in missing], "missing": [", ".join(m) for m in missing],
    })  # fmt: skip
    frame = pd.DataFrame(columns).sort_values(["aggregate_diff", "mean_rank"], ascending=[False, True], na_position="last")
    notes = _notes(variants, reference, benchmarks, settings, seed_counts, pairing, missing)
    return Ranking(frame.reset_index(drop=True), tuple(benchmarks), reference, tuple(notes), seed_differences)


def _decide(
    rows: list[dict[str, Any]], differences: list[dict[str, Difference]], ref: int, benchmarks: Sequence[str],
    settings: BootstrapSettings,
) -> None:
    """Adds each row's significance (Holm over its benchmarks, at its look's level) and verdicts."""
    n_v, n_b = len(rows), len(benchmarks)
    p = np.array([[row.get(f"{bench}_p", np.nan) for bench in benchmarks] for row in rows], dtype=float).reshape(n_v, n_b)
    p_holm = holm(p)
    for v, row in enumerate(rows):
        if v == ref:
            row.update({f"{bench}_verdict": "reference" for bench in [*benchmarks, "aggregate"]})
            row.update({f"{bench}_sig": 0 for bench in [*benchmarks, "aggregate"]})
            row.update({f"{bench}_diff": 0.0 for bench in [*benchmarks, "aggregate"] if bench in row})
            continue
        # one Holm family over the row's benchmarks, at the row's look: its fewest common seeds (a
        # benchmark that some seed lacks is rare, and would only move the race's level slightly)
        look = min(d.seeds for d in differences[v].values()) if differences[v] else 0
        rejected = holm_reject(p[v], lambda share, look=look: settings.test_level(look, settings.alpha * share))
        for b, bench in enumerate(benchmarks):
            row[f"{bench}_p_holm"] = p_holm[v, b]
            diff = differences[v].get(bench)
            row[f"{bench}_sig"] = int(np.sign(diff.estimate)) if diff is not None and rejected[b] else 0
            row[f"{bench}_verdict"] = "" if diff is None else diff.verdict(
                bool(rejected[b]), settings.test_level(diff.seeds), settings.margin
            )  # fmt: skip
        aggregate = differences[v].get("aggregate")
        if aggregate is None:
            row.update({"aggregate_sig": 0, "aggregate_verdict": ""})
            continue
        significant = aggregate.p() < settings.test_level(aggregate.seeds)
        row["aggregate_sig"] = int(np.sign(aggregate.estimate)) if significant else 0
        row["aggregate_verdict"] = aggregate.verdict(significant, settings.test_level(aggregate.seeds), settings.margin)


def _by_seed(value: Runs) -> dict[int, SeedRuns]:
    """A variant's runs as {seed: run}: a single run is seed 0, a list's runs are seeds 0, 1, ..."""
    if isinstance(value, Mapping) and all(isinstance(key, (int, np.integer)) for key in value):
        return {int(seed): run for seed, run in value.items()}
    if isinstance(value, Mapping):
        return {0: value}
    return dict(enumerate(value))


def _empty(bench: str, own: Arm | None = None, level: float = 0.95) -> dict[str, float]:
    """A benchmark that cannot be compared: the variant's own metric if it has one, else NaN."""
    if own is None:
        return {bench: np.nan}
    lo, hi = mean_interval(own, level)
    return {bench: own.mean, f"{bench}_lo": lo, f"{bench}_hi": hi, f"{bench}_seed_sd": float(own.point.std(ddof=1)) if own.k > 1 else np.nan}


def _notes(
    variants: list[str],
    reference: str,
    benchmarks: Sequence[str],
    settings: BootstrapSettings,
    seed_counts: list[int],
    pairing: list[str],
    missing: list[list[str]],
) -> list[str]:
    level = f"{settings.level:.0%}"
    race = (
        f" Seeds were added to undecided rows from {settings.looks[0]} to {settings.looks[1]}: each look is tested at "
        f"its group-sequential level (Pocock-type alpha spending), so the error over all looks stays at "
        f"{settings.alpha:g} and the intervals are repeated confidence intervals."
        if settings.looks else ""
    )  # fmt: skip
    notes = [
        f"Intervals: {level} t, paired by seed. Replicate i of every variant and of {reference} shares seed i; the "
        f"difference is the mean over common seeds of the per-seed difference (each on the same items), its variance "
        f"that of the per-seed differences plus the items' part ({settings.n_resamples:,} bootstrap resamples, seed "
        f"{settings.seed}). ▲ better / ▼ worse: two-sided p, Holm over each variant's {len(benchmarks)} benchmarks, below "
        f"{settings.alpha:g}; ≈ equivalent: the interval inside ±{settings.margin * 100:g} pts (TOST); otherwise "
        f"undecided. MDE: the difference found {settings.power:.0%} of the time at these seeds. Aggregate: mean over "
        f"benchmarks of the primary metric, in points, tested on its own." + race
    ]
    if max(seed_counts) == 1:
        notes.append(
            "Training variance is not included: every variant was trained once (leaderboard.seeds: 1), so the "
            "intervals hold test-set noise only and a re-run may well reverse a marked difference."
        )
        return notes + _missing(variants, missing)
    counts = ", ".join(f"{name} {k}" for name, k in zip(variants, seed_counts))
    notes.append(f"Seeds per variant: {counts}.")
    unpaired = [name for name, how in zip(variants, pairing) if how == "unpaired"]
    if unpaired:
        notes.append(f"{', '.join(unpaired)}: unpaired (fewer than 2 seeds in common with {reference}); Welch interval.")
    item_only = [name for name, how in zip(variants, pairing) if how == "items only"]
    if item_only:
        why = f"{reference} has one seed" if seed_counts[variants.index(reference)] < 2 else "one seed"
        notes.append(f"{', '.join(item_only)}: items only ({why}); training variance is not included in their intervals.")
    return notes + _missing(variants, missing)


def _missing(variants: list[str], missing: list[list[str]]) -> list[str]:
    return [f"{variants[v]}: no result for {', '.join(m)}; left out of its aggregate and mean rank." for v, m in enumerate(missing) if m]

def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN; NaN (without a warning) where a slice has no number."""
    finite = np.isfinite(x)
    total = np.where(finite, x, 0.0).sum(axis)
    n = finite.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)
