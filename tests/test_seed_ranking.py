"""Seed-aware ranking on constructed per-seed, per-item scores: A/A pairs, known shifts, coverage.

The simulated world: item i has a difficulty q_i (drawn per test set), variant v a true effect
delta_v and its own per-item effects c_vi (mean 0), and each training run (seed) a global shift
a_vs; a run gets item i right with probability q_i + delta_v + c_vi + a_vs. The true
difference between two variants is the difference of their deltas.
"""

from __future__ import annotations

import numpy as np
import pytest

from clipsweep.orchestrator.ranking import BootstrapSettings, rank_variants
from clipsweep.trainers.evaluation.metrics import ItemScores


def _world(
    rng: np.random.Generator,
    effects: dict[str, float],
    seeds: int,
    items: int = 500,
    seed_sd: float = 0.02,
    item_sd: float = 0.05,
    benchmarks: int = 1,
) -> dict[str, list[dict[str, ItemScores]]]:
    """Per variant, one {benchmark: ItemScores} per seed, drawn from the world above."""
    runs: dict[str, list[dict[str, ItemScores]]] = {name: [{} for _ in range(seeds)] for name in effects}
    for b in range(benchmarks):
        difficulty = rng.uniform(0.25, 0.75, items)
        for name, delta in effects.items():
            own = rng.normal(0, item_sd, items)
            for s in range(seeds):
                p = np.clip(difficulty + delta + own + rng.normal(0, seed_sd), 0, 1)
                runs[name][s][f"b{b}"] = ItemScores.accuracy(rng.random(items) < p)
    return runs


def _row(ranking, variant: str):
    return ranking.frame.set_index("variant").loc[variant]


def test_seed_noise_keeps_an_aa_pair_from_being_significant_where_items_alone_would_call_it():
    """Two seeds of one config differ by a whole training run's luck: 4 points here. Items alone
    (one run each, 2,000 items) call that significant; with 3 seeds each, the seed spread shows
    that a run-to-run gap of that size is ordinary."""
    rng = np.random.default_rng(11)
    difficulty = rng.uniform(0.25, 0.75, 2000)

    def run(shift: float) -> dict[str, ItemScores]:
        return {"b0": ItemScores.accuracy(rng.random(2000) < np.clip(difficulty + shift, 0, 1))}

    shifts_a, shifts_b = [0.03, -0.02, 0.01], [-0.01, 0.04, -0.03]  # one config: run-to-run sd ~3 points
    settings = BootstrapSettings(n_resamples=500, seed=0)
    single = rank_variants({"a": run(shifts_a[0]), "b": run(shifts_b[2])}, "a", ["b0"], settings)
    assert _row(single, "b")["b0_sig"] == -1  # items only: "b is worse"
    assert _row(single, "b")["interval"] == "items only"
    seeded = rank_variants({"a": [run(x) for x in shifts_a], "b": [run(x) for x in shifts_b]}, "a", ["b0"], settings)
    row = _row(seeded, "b")
    assert row["b0_sig"] == 0 and row["b0_diff_lo"] < 0 < row["b0_diff_hi"]
    assert row["interval"] == "seeds + items" and row["seeds"] == 3
    assert row["b0_seed_sd"] == pytest.approx(np.std(shifts_b, ddof=1), abs=0.015)
    assert 0 < row["b0_p_better"] < 1


def test_a_real_shift_is_detected_with_its_size():
    rng = np.random.default_rng(12)
    runs = _world(rng, {"base": 0.0, "better": 0.06}, seeds=3, items=2000, seed_sd=0.01, benchmarks=3)
    ranking = rank_variants(runs, "base", ["b0", "b1", "b2"], BootstrapSettings(n_resamples=500))
    row = _row(ranking, "better")
    assert all(row[f"{b}_sig"] == 1 and row[f"{b}_verdict"] == "better" for b in ("b0", "b1", "b2"))
    assert row["aggregate_sig"] == 1 and row["aggregate_diff"] == pytest.approx(0.06, abs=0.03)
    assert row["aggregate_diff_lo"] < 0.06 < row["aggregate_diff_hi"] and row["pairing"] == "paired"
    assert row["aggregate_p_better"] == 1.0
    assert list(ranking.frame["variant"]) == ["better", "base"]
    assert len(ranking.seed_differences["better"]) == 3


@pytest.mark.parametrize("seeds", [3, 5])
def test_difference_intervals_cover_the_true_difference_95_percent_of_the_time(seeds):
    """300 simulated test sets and training runs with a known difference of 2 points."""
    rng = np.random.default_rng(100 + seeds)
    covered = []
    for trial in range(300):
        runs = _world(rng, {"base": 0.0, "v": 0.02}, seeds=seeds, items=400)
        row = _row(rank_variants(runs, "base", ["b0"], BootstrapSettings(n_resamples=200, seed=trial)), "v")
        covered.append(row["b0_diff_lo"] <= 0.02 <= row["b0_diff_hi"])
    assert 0.92 <= np.mean(covered) <= 0.98, np.mean(covered)


def test_one_seed_on_either_side_falls_back_to_items_and_says_so():
    rng = np.random.default_rng(13)
    runs = _world(rng, {"base": 0.0, "three": 0.0, "one": 0.0}, seeds=3)
    runs["one"] = runs["one"][:1]
    ranking = rank_variants(runs, "base", ["b0"], BootstrapSettings(n_resamples=200))
    assert _row(ranking, "one")["interval"] == "items only" and _row(ranking, "one")["seeds"] == 1
    assert _row(ranking, "three")["interval"] == "seeds + items"
    assert any(note.startswith("one: items only") for note in ranking.notes)
    lone = rank_variants({k: v[:1] for k, v in runs.items()}, "base", ["b0"], BootstrapSettings(n_resamples=200))
    assert any("Training variance is not included" in note for note in lone.notes)
