"""Group-sequential critical values for adaptive replicates (`leaderboard.seeds: {min, max}`).

Racing looks at a finalist's paired comparison after `min` common seeds, and after every seed
added up to `max`. Testing each look at the fixed alpha inflates false positives (a naive
re-test over looks 3..10 calls an A/A pair different about 12% of the time at alpha 0.05;
`tests/test_sequential.py`). Here each look n gets a nominal level that keeps the error over
all looks at alpha: Lan-DeMets alpha spending with the Pocock-type function
alpha(t) = alpha * ln(1 + (e - 1) t), t = n / max (Lan and DeMets 1983; Jennison and Turnbull
2000, ch. 7). The Pocock shape spends more early than O'Brien-Fleming's, which is what racing
wants: a clear result stops at the first look and frees the seeds for the rows that need them.

The boundaries are for the paired t statistic T_n = mean(d) / (sd(d) / sqrt(n)) with d_i
normal, whose joint law over looks does not depend on the difference's scale, so one Monte
Carlo table (fixed generator seed: reproducible) serves every comparison. The critical value
|T_n| > c_n is returned as a nominal two-sided level 2 * P(t_{n-1} > c_n); a comparison whose
variance also has an item part (more degrees of freedom) applies that level to its own t, which
is conservative. The intervals at these levels are repeated confidence intervals: all looks
together cover the true difference with probability 1 - alpha.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats

SIMULATIONS = 200_000


def pocock_spending(t: float, alpha: float) -> float:
    """The alpha spent by information fraction t (0 < t <= 1): alpha * ln(1 + (e - 1) t)."""
    return alpha * math.log1p((math.e - 1) * min(t, 1.0))


@functools.lru_cache(maxsize=256)
def nominal_levels(alpha: float, first: int, last: int) -> tuple[float, ...]:
    """Two-sided nominal levels of the looks n = first..last (index n - first), so that the
    chance of crossing at any look under "no difference" is `alpha`.

    Raises:
        ValueError: first < 2 (a t statistic needs 2 seeds) or last < first.
    """
    if first < 2 or last < first:
        raise ValueError(f"looks {first}..{last}: need 2 <= first <= last")
    rng = np.random.default_rng(0)
    draws = rng.standard_normal((SIMULATIONS, last), dtype=np.float32).astype(np.float64)
    sums, squares = np.cumsum(draws, axis=1), np.cumsum(draws**2, axis=1)
    alive = np.ones(SIMULATIONS, dtype=bool)  # paths that crossed no earlier boundary
    levels, spent = [], 0.0
    for look in range(first, last + 1):
        mean = sums[:, look - 1] / look
        sd = np.sqrt(np.maximum(squares[:, look - 1] - look * mean**2, 0.0) / (look - 1))
        statistic = np.abs(mean) / (sd / math.sqrt(look))
        budget = pocock_spending(look / last, alpha) - spent  # crossings allowed at this look
        candidates = np.sort(statistic[alive])[::-1]
        crossings = int(budget * SIMULATIONS)
        critical = candidates[crossings] if crossings < len(candidates) else 0.0
        alive &= statistic <= critical
        spent = 1.0 - alive.mean()
        levels.append(float(2 * stats.t.sf(critical, look - 1)))
    return tuple(levels)


def nominal_level(alpha: float, n: int, first: int, last: int) -> float:
    """The nominal level of look n (n common seeds) of a race from `first` to `last` seeds. A
    fixed seed count (first == last) is one look, at alpha; a row left below `first` by failed
    replicates gets the first look's level."""
    if first >= last:
        return alpha
    return nominal_levels(alpha, first, last)[min(max(n, first), last) - first]
