"""Paired-by-seed ranking, verdicts and the adaptive race's error control, on constructed data.

The simulated world: item i has a difficulty q_i (per test set), variant v a true effect
delta_v and its own per-item effects c_vi (mean 0), and training run s a shift. With
`shared` the shift comes mostly from the seed (a_s, the same for every variant trained with
seed s: common random numbers) and a little from the variant (b_vs); without it, it is
variant's own. A run gets item i right with probability q_i + delta_v + c_vi + shift.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from clipsweep.orchestrator.comparison import Difference
from clipsweep.orchestrator.ranking import BootstrapSettings, rank_variants
from clipsweep.orchestrator.sequential import nominal_level, nominal_levels
from clipsweep.trainers.evaluation.metrics import ItemScores

TRUE = 0.02  # the variant's true gain over the reference


def _world(rng: np.random.Generator, seeds: int, shared: bool, items: int = 400, seed_sd: float = 0.03,
           own_sd: float = 0.005, offset: int = 0) -> dict[str, dict[int, dict[str, ItemScores]]]:  # fmt: skip
    """{variant: {seed: {"b0": ItemScores}}} for "ref" and "v"; `offset` moves v's seed labels
    (no common seeds: the unpaired interval on the same numbers)."""
    difficulty = rng.uniform(0.25, 0.75, items)
    common = rng.normal(0, seed_sd, seeds)
    runs: dict[str, dict[int, dict[str, ItemScores]]] = {}
    for name, delta, label in (("ref", 0.0, 0), ("v", TRUE, offset)):
        own = rng.normal(0, 0.05, items)
        shift = common + rng.normal(0, own_sd, seeds) if shared else rng.normal(0, math.hypot(seed_sd, own_sd), seeds)
        runs[name] = {
            s + label: {"b0": ItemScores.accuracy(rng.random(items) < np.clip(difficulty + delta + own + shift[s], 0, 1))}
            for s in range(seeds)
        }  # fmt: skip
    return runs


def _intervals(runs, settings: BootstrapSettings) -> tuple[float, float, str]:
    row = rank_variants(runs, "ref", ["b0"], settings).frame.set_index("variant").loc["v"]
    return row["b0_diff_lo"], row["b0_diff_hi"], row["pairing"]


def test_shared_seed_noise_makes_the_paired_interval_narrower_and_it_still_covers():
    """200 simulated sweeps, 3 common seeds: the paired interval covers the true gain 95% +- 3%
    of the time, and is narrower than the unpaired one on the same numbers."""
    rng = np.random.default_rng(0)
    covered, paired_width, unpaired_width = [], [], []
    for trial in range(200):
        runs = _world(rng, seeds=3, shared=True, items=2000)
        settings = BootstrapSettings(n_resamples=200, seed=trial)
        lo, hi, pairing = _intervals(runs, settings)
        assert pairing == "paired"
        covered.append(lo <= TRUE <= hi)
        paired_width.append(hi - lo)
        lo, hi, pairing = _intervals({"ref": runs["ref"], "v": {s + 100: r for s, r in runs["v"].items()}}, settings)
        assert pairing == "unpaired"
        unpaired_width.append(hi - lo)
    assert 0.92 <= np.mean(covered) <= 0.98, np.mean(covered)
    assert np.median(paired_width) < 0.7 * np.median(unpaired_width), (np.median(paired_width), np.median(unpaired_width))


def test_independent_seeds_paired_and_unpaired_agree():
    """No shared noise: pairing buys nothing, and costs little with 10 seeds (width within 10%)."""
    rng = np.random.default_rng(1)
    ratios = []
    for trial in range(200):
        runs = _world(rng, seeds=10, shared=False)
        settings = BootstrapSettings(n_resamples=200, seed=trial)
        lo, hi, _ = _intervals(runs, settings)
        lo_u, hi_u, _ = _intervals({"ref": runs["ref"], "v": {s + 100: r for s, r in runs["v"].items()}}, settings)
        ratios.append((hi - lo) / (hi_u - lo_u))
    assert 0.9 <= np.mean(ratios) <= 1.1, np.mean(ratios)


def test_pairs_are_found_by_seed_not_by_order():
    rng = np.random.default_rng(2)
    runs = _world(rng, seeds=4, shared=True)
    shuffled = {"ref": runs["ref"], "v": {s: runs["v"][s] for s in (3, 1, 0, 2)}}
    a = rank_variants(runs, "ref", ["b0"]).frame.set_index("variant").loc["v"]
    b = rank_variants(shuffled, "ref", ["b0"]).frame.set_index("variant").loc["v"]
    assert a["b0_diff_lo"] == b["b0_diff_lo"] and a["b0_p_better"] == b["b0_p_better"]
    partial = {"ref": runs["ref"], "v": {0: runs["v"][0], 2: runs["v"][2], 9: runs["v"][3]}}  # seed 9: the reference has none
    row = rank_variants(partial, "ref", ["b0"]).frame.set_index("variant").loc["v"]
    assert row["pairing"] == "paired" and row["common_seeds"] == 2 and row["seeds"] == 3


def test_verdicts_tell_no_difference_from_too_noisy_to_say():
    rng = np.random.default_rng(3)
    quiet = _world(rng, seeds=5, shared=True, items=20000, seed_sd=0.03, own_sd=0.001)
    quiet["v"] = {s: {"b0": run["b0"]} for s, run in quiet["ref"].items()}  # identical runs: d_i = 0
    row = rank_variants(quiet, "ref", ["b0"], BootstrapSettings(margin=0.01)).frame.set_index("variant").loc["v"]
    assert row["b0_verdict"] == "equivalent" and row["aggregate_verdict"] == "equivalent"
    noisy = _world(rng, seeds=3, shared=False, items=300, seed_sd=0.05)
    noisy["v"] = {s: {"b0": run["b0"]} for s, run in _world(rng, seeds=3, shared=False, items=300, seed_sd=0.05)["ref"].items()}
    row = rank_variants(noisy, "ref", ["b0"], BootstrapSettings(margin=0.01)).frame.set_index("variant").loc["v"]
    assert row["b0_verdict"] == "undecided" and row["aggregate_mde_pts"] > 5


def test_minimum_detectable_effect_is_found_at_its_power():
    """A true difference equal to the MDE (as computed from sd and seeds) is detected ~80% of the time."""
    rng = np.random.default_rng(4)
    n, sd = 4, 1.0
    mde = Difference(0.0, sd / math.sqrt(n), n - 1, "paired", n, 0.5).mde(0.05, 0.8)
    hits = 0
    for _ in range(4000):
        d = rng.normal(mde, sd, n)
        hits += Difference(d.mean(), sd / math.sqrt(n), n - 1, "paired", n, 0.5).p() < 0.05
    assert 0.76 <= hits / 4000 <= 0.84


def _race(rng: np.random.Generator, level, first: int = 3, last: int = 10, sims: int = 20000) -> float:
    """Share of A/A races (d_i normal, mean 0) that call a difference at any look from `first`
    to `last` seeds, each look tested at level(n)."""
    d = rng.normal(0.0, 1.0, (sims, last))
    called = np.zeros(sims, dtype=bool)
    for n in range(first, last + 1):
        t = d[:, :n].mean(1) / (d[:, :n].std(1, ddof=1) / math.sqrt(n))
        called |= 2 * stats.t.sf(np.abs(t), n - 1) < level(n)
    return float(called.mean())


def test_the_race_keeps_the_error_over_all_looks_where_a_naive_retest_inflates_it():
    rng = np.random.default_rng(5)
    naive = _race(rng, lambda n: 0.05)
    sequential = _race(rng, lambda n: BootstrapSettings(looks=(3, 10)).test_level(n))
    tolerance = 3 * math.sqrt(0.05 * 0.95 / 20000)  # Monte Carlo error of an independent check
    assert naive > 0.10  # about 0.16: looking 8 times at 0.05
    assert sequential <= 0.05 + tolerance, sequential


def test_nominal_levels_spend_alpha_and_a_fixed_count_is_one_look():
    levels = nominal_levels(0.05, 3, 10)
    assert len(levels) == 8 and all(0 < level < 0.05 for level in levels)
    assert nominal_level(0.05, 3, 3, 3) == 0.05  # min == max: a fixed count
    assert nominal_level(0.05, 2, 3, 10) == levels[0]  # below min after a failed replicate: the first look's
    with pytest.raises(ValueError):
        nominal_levels(0.05, 1, 4)
