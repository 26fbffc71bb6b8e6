"""One variant against the reference: the paired, unpaired or items-only difference of their
runs, its interval, p, minimum detectable effect and verdict (docs/ranking.md).

`Arm` holds one side's per-seed metrics and their item resamples; `compare` pairs two arms by
seed. `ranking.rank_variants` builds the arms and reads these for every benchmark and the
aggregate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Arm:
    """One variant on one benchmark (or the aggregate): its seeds' metrics and resamples."""

    seeds: np.ndarray  # (k,) the runs' seeds
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
    def boot_var(self) -> float:
        """The bootstrap (items') variance of the mean over seeds."""
        return float(self.boot.mean(axis=1).var())

    @property
    def item_noise(self) -> float:
        """The per-item seed noise in `boot_var`.

        Each seed's bootstrap variance holds the items' variance plus that seed's own per-item
        noise; the mean over seeds holds 1/k of the latter. Their gap, scaled, is that 1/k. It
        is in s^2 / k too, so the item term leaves it out: nothing is counted twice. (Moving it
        from the seed term to the item term instead would give it the items' degrees of
        freedom; with 2 seeds that covered 91% in place of 95%, so the seed term keeps it.)"""
        if self.k < 2:
            return 0.0
        return max(0.0, (float(np.mean(self.boot.var(axis=0))) - self.boot_var) / (self.k - 1))

    @property
    def item_var(self) -> float:
        """The items' variance of the mean over seeds, without the per-item seed noise."""
        return max(0.0, self.boot_var - self.item_noise)

    def on(self, seeds: np.ndarray) -> Arm:
        keep = np.isin(self.seeds, seeds)
        return Arm(self.seeds[keep], self.point[keep], self.boot[:, keep])


@dataclass(frozen=True)
class Difference:
    """A variant minus the reference on one benchmark or the aggregate."""

    estimate: float
    se: float
    df: float  # Satterthwaite's; inf when no seed term (a normal interval)
    pairing: str  # paired | unpaired | items only
    seeds: int  # common seeds (paired), else the smaller side's count
    p_better: float  # P(variant > reference) over common seeds (paired) or seed pairs
    per_seed: tuple[float, ...] = ()  # the d_i of a paired difference

    def _isf(self, q: float) -> float:
        """The upper-q quantile of this difference's t (normal when df is infinite)."""
        return float(stats.t.isf(q, self.df) if math.isfinite(self.df) else stats.norm.isf(q))

    def critical(self, alpha: float) -> float:
        """The two-sided critical value at level alpha."""
        return self._isf(alpha / 2)

    def interval(self, alpha: float) -> tuple[float, float]:
        half = self.critical(alpha) * self.se
        return self.estimate - half, self.estimate + half

    def p(self) -> float:
        """Two-sided p of "no difference"."""
        if self.se == 0:
            return 1.0 if self.estimate == 0 else 0.0
        z = abs(self.estimate) / self.se
        return float(min(1.0, 2 * (stats.t.sf(z, self.df) if math.isfinite(self.df) else stats.norm.sf(z))))

    def mde(self, alpha: float, power: float) -> float:
        """The smallest true difference this comparison finds with probability `power`."""
        return (self.critical(alpha) + self._isf(1 - power)) * self.se

    def verdict(self, significant: bool, alpha: float, margin: float) -> str:
        """better / worse when significant; equivalent when the interval at `alpha` lies inside
        +-margin (TOST); undecided otherwise."""
        if significant:
            return "better" if self.estimate > 0 else "worse"
        lo, hi = self.interval(alpha)
        return "equivalent" if -margin < lo and hi < margin else "undecided"


def _se_df(estimate: float, terms: list[tuple[float, int]], item_var: float) -> tuple[float, float]:
    """(se, df) of a variance = sum of seed terms (each with k - 1 degrees of freedom) + an item
    term from 1,000 resamples of thousands of items (it adds none: Satterthwaite)."""
    variance = item_var + sum(term for term, _ in terms)
    spread = sum(term**2 / (k - 1) for term, k in terms)
    return math.sqrt(max(variance, 0.0)), variance**2 / spread if spread > 0 else math.inf


def compare(arm: Arm, ref: Arm) -> Difference:
    """arm - ref: paired over their common seeds (2 or more), else Welch, else items only."""
    common = np.intersect1d(arm.seeds, ref.seeds)
    if len(common) >= 2:
        mine, theirs = arm.on(common), ref.on(common)  # both sorted by seed
        d = Arm(common, mine.point - theirs.point, mine.boot - theirs.boot)
        # n - 1 degrees of freedom, the item part adding none: it is the gap of two bootstrap
        # variances, as noisy as the per-item seed noise it removes, and where the d_i happen to
        # agree Satterthwaite would let it turn a t_2 into a t_27 (coverage 89% at 3 seeds)
        se, df = math.sqrt(d.seed_term + d.item_var), d.k - 1
        p_better = float(np.mean((d.point > 0) + 0.5 * (d.point == 0)))
        return Difference(d.mean, se, df, "paired", d.k, p_better, tuple(d.point.tolist()))
    diff = arm.mean - ref.mean
    pairs = arm.point[:, None] - ref.point[None, :]
    p_better = float(np.mean((pairs > 0) + 0.5 * (pairs == 0)))
    item = float((arm.boot.mean(axis=1) - ref.boot.mean(axis=1)).var())
    if arm.k < 2 or ref.k < 2:  # a side without seed variance: items only, and marked so
        return Difference(diff, math.sqrt(item), math.inf, "items only", min(arm.k, ref.k), p_better)
    item = max(0.0, item - arm.item_noise - ref.item_noise)
    se, df = _se_df(diff, [(arm.seed_term, arm.k), (ref.seed_term, ref.k)], item)
    return Difference(diff, se, df, "unpaired", min(arm.k, ref.k), p_better)


def mean_interval(arm: Arm, level: float) -> tuple[float, float]:
    """The interval of one variant's mean over seeds (seed and item noise)."""
    se, df = _se_df(arm.mean, [(arm.seed_term, arm.k)] if arm.k > 1 else [], arm.item_var)
    return Difference(arm.mean, se, df, "", arm.k, math.nan).interval(1 - level)
