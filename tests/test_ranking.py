"""Ranking on constructed per-item scores: significance, pairing, Holm, normalisation, ranks,
missing benchmarks, finalist choice, and the rendered tables and pictures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clipsweep.orchestrator.finalists import (
    Finalist,
    Selection,
    choose_finalists,
    next_seeds,
    replicate_configs,
    with_replicates,
)
from clipsweep.orchestrator.leaderboard import Leaderboard, rank_scores
from clipsweep.orchestrator.ranking import (
    BootstrapSettings,
    Ranking,
    holm,
    rank_variants,
    resample_counts,
    resampled_metrics,
)
from clipsweep.orchestrator.report import console_table, summary, write_reports
from clipsweep.orchestrator.sections import LeaderboardSettings
from clipsweep.orchestrator.spec import SweepSpec
from clipsweep.trainers.evaluation.metrics import ItemScores, mean_per_class_recall, retrieval

BENCHMARKS = [f"b{i}" for i in range(10)]


def _accuracy(correct) -> ItemScores:
    return ItemScores.accuracy(np.asarray(correct, dtype=bool))


def _row(ranking, variant: str) -> pd.Series:
    return ranking.frame.set_index("variant").loc[variant]


def test_better_on_every_item_is_significant_and_identical_is_not():
    rng = np.random.default_rng(0)
    items = {"base": {}, "twin": {}, "better": {}}
    for bench in BENCHMARKS:
        base = rng.random(300) < 0.5
        items["base"][bench] = _accuracy(base)
        items["twin"][bench] = _accuracy(base)
        items["better"][bench] = _accuracy(base | (rng.random(300) < 0.3))  # right wherever base is, and more
    ranking = rank_variants(items, "base", BENCHMARKS)
    better, twin = _row(ranking, "better"), _row(ranking, "twin")
    assert all(better[f"{b}_sig"] == 1 and better[f"{b}_diff_lo"] > 0 for b in BENCHMARKS)
    assert all(twin[f"{b}_sig"] == 0 and twin[f"{b}_p"] == 1.0 and twin[f"{b}_diff"] == 0 for b in BENCHMARKS)
    assert better["aggregate_diff_lo"] > 0 and twin["aggregate_diff"] == 0 and twin["aggregate_p"] == 1.0
    assert list(ranking.frame["variant"])[0] == "better"


def test_paired_interval_covers_the_true_difference_and_is_narrower_than_unpaired():
    """Populations with known accuracies 0.60 and 0.65 (variant = base plus 5% more items right)."""
    covered, widths = 0, []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        u = rng.random(1000)
        base, variant = u < 0.60, u < 0.65  # true difference 0.05, strongly paired
        ranking = rank_variants({"base": {"t": _accuracy(base)}, "v": {"t": _accuracy(variant)}}, "base", ["t"],
                                BootstrapSettings(n_resamples=400, seed=seed))  # fmt: skip
        row = _row(ranking, "v")
        covered += row["t_diff_lo"] <= 0.05 <= row["t_diff_hi"]
        widths.append(row["t_diff_hi"] - row["t_diff_lo"])
    assert covered / 60 >= 0.85  # nominal 95%
    unpaired = 2 * 1.96 * np.sqrt(0.6 * 0.4 / 1000 + 0.65 * 0.35 / 1000)  # independent samples' interval width
    assert np.mean(widths) < 0.5 * unpaired


def test_holm_adjusts_p_values_step_down():
    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan]))
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    np.testing.assert_allclose(holm(np.array([[0.5, 0.001], [0.2, 0.9]])), [[0.5, 0.002], [0.4, 0.9]])


def test_holm_takes_back_a_borderline_difference():
    """One benchmark differs a little (uncorrected p < 0.05), nine not at all: Holm over 10 says no."""
    rng = np.random.default_rng(3)
    base = {b: rng.random(400) < 0.5 for b in BENCHMARKS}
    variant = dict(base)
    variant["b0"] = base["b0"].copy()
    variant["b0"][np.flatnonzero(~base["b0"])[:13]] = True  # 13 of 400 items newly right
    variant["b0"][np.flatnonzero(base["b0"])[:4]] = False  # 4 newly wrong: +2.25 points, noisy
    items = {"base": {b: _accuracy(v) for b, v in base.items()}, "v": {b: _accuracy(v) for b, v in variant.items()}}
    row = _row(rank_variants(items, "base", BENCHMARKS), "v")
    assert row["b0_p"] < 0.05 and row["b0_diff_lo"] > 0  # significant alone
    assert row["b0_p_holm"] > 0.05 and row["b0_sig"] == 0  # not after the correction over 10


def test_aggregate_and_mean_rank_on_a_3x3_example():
    def scores(accuracies):
        return {b: _accuracy(np.arange(10) < round(a * 10)) for b, a in zip(("x", "y", "z"), accuracies)}

    items = {"base": scores([0.5, 0.4, 0.8]), "A": scores([0.6, 0.2, 0.8]), "B": scores([0.4, 0.4, 1.0])}
    ranking = rank_variants(items, "base", ["x", "y", "z"])
    frame = ranking.frame.set_index("variant")
    # aggregate = mean over benchmarks of the metric (DataComp's average), not of ratios
    np.testing.assert_allclose(frame.loc[["base", "A", "B"], "aggregate"], [1.7 / 3, 1.6 / 3, 1.8 / 3])
    np.testing.assert_allclose(frame.loc["A", "aggregate_diff"], (0.1 - 0.2 + 0.0) / 3)
    # ranks x: A 1, base 2, B 3; y: base/B 1.5, A 3; z: B 1, base/A 2.5
    np.testing.assert_allclose(frame.loc[["base", "A", "B"], "mean_rank"], [2.0, 6.5 / 3, 5.5 / 3])
    assert list(ranking.frame["variant"]) == ["B", "base", "A"]


def test_a_missing_benchmark_is_missing_not_zero():
    rng = np.random.default_rng(1)
    full = {b: _accuracy(rng.random(200) < 0.5) for b in ("x", "y")}
    items = {"base": full, "partial": {"x": full["x"]}}
    ranking = rank_variants(items, "base", ["x", "y"])
    row = _row(ranking, "partial")
    assert np.isnan(row["y"]) and np.isnan(row["y_diff"]) and row["y_sig"] == 0
    assert row["aggregate"] == row["x"] and row["aggregate_diff"] == 0  # compared on what both have
    assert row["benchmarks_scored"] == 1 and row["missing"] == "y"
    assert any("partial: no result for y" in note for note in ranking.notes)


def test_item_scores_reproduce_the_suite_metrics():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 7, 500)
    predictions = np.where(rng.random(500) < 0.6, labels, rng.integers(0, 7, 500))
    recall = ItemScores.class_recall(predictions == labels, labels)
    assert recall.value() == pytest.approx(mean_per_class_recall(predictions, labels))
    image, text = rng.normal(size=(50, 8)), rng.normal(size=(150, 8))
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    text_image = np.repeat(np.arange(50), 3)
    metrics = retrieval(image, text, text_image)
    scores = ItemScores.retrieval(metrics["i2t_hit1"], metrics["t2i_hit1"], text_image)
    assert scores.value() == pytest.approx(metrics["mean_R@1"])
    ones = np.ones((1, 50), dtype=np.float32)  # a "resample" that draws every item once
    assert resampled_metrics(ones, [scores])[0, 0] == pytest.approx(metrics["mean_R@1"])
    counts = resample_counts(50, 20, np.random.default_rng(0))
    assert counts.shape == (20, 50) and (counts.sum(1) == 50).all()


def _trials(rows):
    columns = ["name", "run_id", "role", "status", "score", "overrides", "failure_reason"]
    return pd.DataFrame([dict(zip(columns, r)) for r in rows])


def test_finalists_are_the_best_completed_trials_plus_the_baseline():
    trials = _trials([
        ("trial-00-baseline", "r0", "baseline", "completed", 0.40, {}, None),
        ("trial-01-point", "r1", "point", "completed", 0.50, {"a.b": 1}, None),
        ("trial-02-search", "r2", "search", "stopped_early", 0.70, {"a.b": 2}, None),
        ("trial-03-search", "r3", "search", "completed", 0.45, {"a.b": 3}, None),
        ("trial-04-search", "r4", "search", "failed", None, {"a.b": 4}, "FloatingPointError: nan"),
    ])  # fmt: skip
    chosen = choose_finalists(trials, n=1)
    assert [f.name for f in chosen.finalists] == ["trial-00-baseline", "trial-01-point"]
    assert chosen.reference == "trial-00-baseline" and chosen.note is None
    failed = trials.assign(status=["failed", "completed", "stopped_early", "completed", "failed"],
                           score=[None, 0.5, 0.7, 0.45, None], failure_reason=["OOM", None, None, None, "nan"])  # fmt: skip
    chosen = choose_finalists(failed, n=3)
    assert chosen.reference == "trial-01-point"
    assert "baseline trial is failed (OOM)" in chosen.note and "trial-01-point" in chosen.note
    with pytest.raises(ValueError, match="nothing to rank"):
        choose_finalists(trials.assign(score=None), n=3)


def _board(items, note: str | None = None) -> Leaderboard:
    finalists = [Finalist(name, f"run{i}", "baseline" if i == 0 else "search", {} if i == 0 else {"objective.omega": 1.2}, 0.5, "completed")
                 for i, name in enumerate(items)]  # fmt: skip
    settings = LeaderboardSettings()
    ranking = rank_variants(items, finalists[0].name, BENCHMARKS, settings.bootstrap)
    return Leaderboard(ranking, Selection(finalists, finalists[0].name, note), settings)


def test_reports_show_every_variant_with_marks_and_pictures(tmp_path):
    rng = np.random.default_rng(4)
    base = {b: rng.random(300) < 0.5 for b in BENCHMARKS}
    items = {
        "trial-00-baseline": {b: _accuracy(v) for b, v in base.items()},
        "trial-05-search": {b: _accuracy(v | (rng.random(300) < 0.3)) for b, v in base.items() if b != "b9"},
    }
    board = _board(items)
    paths = write_reports(board, str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "leaderboard.csv", "leaderboard.md", "leaderboard.html", "leaderboard_heatmap.png", "leaderboard_forest.png"
    ]  # fmt: skip
    text = (tmp_path / "leaderboard.md").read_text()
    assert "▲" in text and "missing" in text and "Holm" in text and "trial-05-search" in text
    assert text.count("](data:image/png;base64,") == 2  # embedded: MLflow's preview resolves no relative paths
    said = summary(board, "trial-05-search", 0.61, "/runs/sweep/leaderboard/leaderboard.html")
    assert said["winner"] == "trial-05-search" and "its aggregate beats trial-00-baseline significantly (p < 0.05)" in said["text"]
    assert said["best_trial"] == "trial-05-search (cheap-tier score 0.610)"
    assert "`/runs/sweep/leaderboard/leaderboard.html`" in said["text"] and "[+" in said["winner_aggregate"]
    page = (tmp_path / "leaderboard.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "trial-00-baseline (reference)" in page
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(csv["variant"]) == ["trial-05-search", "trial-00-baseline"] and csv.loc[0, "missing"] == "b9"
    assert console_table(board).row_count == 2


def test_a_substitute_reference_is_stated_everywhere(tmp_path):
    rng = np.random.default_rng(5)
    items = {name: {b: _accuracy(rng.random(100) < 0.5) for b in BENCHMARKS} for name in ("trial-01-point", "trial-03-search")}
    note = "The baseline trial is failed (OOM): everything is normalised against trial-01-point, the best completed trial."
    board = _board(items, note)
    write_reports(board, str(tmp_path))
    assert board.frame().attrs["notes"][0] == note
    assert note in (tmp_path / "leaderboard.md").read_text() and note in (tmp_path / "leaderboard.html").read_text()
    assert note in str(console_table(board).caption)


def test_replicates_fill_each_finalist_on_the_common_seeds_and_a_failed_one_is_counted_out():
    """The point set its own optim.seed (7): it is trained again on the baseline's seeds 0, 1, 2,
    and its search run is not ranked (no run of the baseline shares its seed)."""
    trials = _trials([
        ("trial-00-baseline", "r0", "baseline", "completed", 0.40, {}, None),
        ("trial-01-point", "r1", "point", "completed", 0.50, {"optim.seed": 7}, None),
        ("trial-00-baseline-seed1", "r2", "replicate", "completed", 0.41, {"optim.seed": 1}, None),
        ("trial-01-point-seed0", "r3", "replicate", "completed", 0.49, {"optim.seed": 0}, None),
        ("trial-01-point-seed1", "r4", "replicate", "failed", None, {"optim.seed": 1}, "OOM"),
    ]).assign(seed=[0, 7, 1, 0, 1], replicate_of=[None, None, "trial-00-baseline", "trial-01-point", "trial-01-point"])  # fmt: skip
    spec = SweepSpec.from_dict({
        "name": "t", "search_space": {"objective": {"logit_transform": {"type": "choice", "values": ["sine"]}}},
        "leaderboard": {"finalists": 1, "seeds": 3},
    })  # fmt: skip
    selection = choose_finalists(trials, n=1)
    assert [f.name for f in selection.finalists] == ["trial-00-baseline", "trial-01-point"]  # never a replicate
    wanted = {f.name: 3 for f in selection.finalists}
    configs = replicate_configs(selection, spec, trials, wanted)  # completed and failed ones are not trained again
    assert [(c["replicate_of"], c["optim.seed"]) for c in configs] == [("trial-00-baseline", 2), ("trial-01-point", 2)]
    assert all(c["role"] == "replicate" for c in configs)
    selection = with_replicates(selection, trials, spec)
    assert [r.name for r in selection.runs_of("trial-00-baseline")] == ["trial-00-baseline", "trial-00-baseline-seed1"]
    assert [r.name for r in selection.runs_of("trial-01-point")] == ["trial-01-point-seed0"]  # seed 7 is not common
    rng = np.random.default_rng(6)
    scores = {r.name: ({}, {b: _accuracy(rng.random(200) < 0.5) for b in BENCHMARKS}) for r in selection.runs()}
    board = rank_scores(selection, scores, LeaderboardSettings(seeds=3))
    frame = board.frame().set_index("variant")
    assert frame.loc["trial-00-baseline", "seeds"] == 2 and frame.loc["trial-01-point", "seeds"] == 1
    assert frame.loc["trial-01-point", "interval"] == "items only"
    assert "trial-01-point: ranked on 1 of 3 seeds" in " ".join(board.notes)  # one seed: nothing to pair
    assert "trial-00-baseline: ranked on 2 of 3 seeds" in " ".join(board.notes)


def test_a_baseline_with_no_completed_run_hands_the_reference_on_and_says_so():
    finalists = [Finalist("trial-00-baseline", "r0", "baseline", {}, 0.4, "stopped_early"),
                 Finalist("trial-01-point", "r1", "point", {"optim.lr": 0.1}, 0.5, "completed")]  # fmt: skip
    selection = Selection(finalists, "trial-00-baseline", None, seeds=1)
    rng = np.random.default_rng(7)
    board = rank_scores(selection, {"trial-01-point": ({}, {b: _accuracy(rng.random(50) < 0.5) for b in BENCHMARKS})}, LeaderboardSettings())
    assert board.ranking.reference == "trial-01-point"
    assert any("trial-00-baseline has no completed run" in note for note in board.notes)
    assert any("Training variance is not included" in note for note in board.notes)
    with pytest.raises(ValueError, match="nothing to rank"):
        rank_scores(selection, {}, LeaderboardSettings())


def test_reports_carry_verdicts_pairing_and_mde(tmp_path):
    """Three common seeds: a clear gain (better), a copy of the baseline with a few items
    flipped (equivalent), and a variant scored on few items with its own seed noise (undecided)."""
    rng = np.random.default_rng(8)
    base = {s: {b: rng.random(4000) < 0.5 + 0.03 * s for b in BENCHMARKS} for s in range(3)}
    items = {
        "trial-00-baseline": {s: {b: _accuracy(v) for b, v in run.items()} for s, run in base.items()},
        "trial-01-search": {s: {b: _accuracy(v | (rng.random(4000) < 0.2)) for b, v in run.items()} for s, run in base.items()},
        "trial-02-search": {s: {b: _accuracy(v ^ (rng.random(4000) < 0.002)) for b, v in run.items()} for s, run in base.items()},
        "trial-03-search": {s: {b: _accuracy(rng.random(4000) < 0.5 + rng.normal(0, 0.05)) for b in BENCHMARKS} for s in range(3)},
    }
    board = _board(items)
    frame = board.frame().set_index("variant")
    assert frame.loc["trial-01-search", "aggregate_verdict"] == "better"
    assert frame.loc["trial-02-search", "aggregate_verdict"] == "equivalent"
    assert frame.loc["trial-03-search", "aggregate_verdict"] == "undecided"
    assert frame.loc["trial-03-search", "aggregate_mde_pts"] > 3 * frame.loc["trial-02-search", "aggregate_mde_pts"]
    assert set(frame["pairing"]) == {"paired"} and set(frame["common_seeds"]) == {3}
    assert frame.loc["trial-00-baseline", "aggregate_verdict"] == "reference"
    write_reports(board, str(tmp_path))
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert {"aggregate_verdict", "aggregate_mde_pts", "pairing", "seeds", *(f"{b}_verdict" for b in BENCHMARKS)} <= set(csv.columns)
    text = (tmp_path / "leaderboard.md").read_text()
    assert "▲" in text and "≈" in text and "equivalent (MDE" in text and "undecided (MDE" in text
    said = summary(board, "trial-01-search", 0.6, "page.html")
    assert said["verdicts"] == "1 better, 1 equivalent, 1 undecided"
    assert len(board.ranking.seed_differences["trial-01-search"]) == 3  # the forest plot's dots: one per common seed


def test_a_race_step_adds_a_seed_to_undecided_rows_and_their_pairs_to_the_reference():
    frame = pd.DataFrame({"variant": ["base", "a", "b", "c"], "aggregate_verdict": ["reference", "undecided", "better", "undecided"]})
    ranking = Ranking(frame, ("b0",), "base", ())
    racing, wanted = next_seeds(ranking, {"base": 4, "a": 4, "b": 3, "c": 10}, most=10)
    assert racing == ["a"]  # b is decided, c has the most seeds allowed
    assert wanted == {"base": 10, "a": 5, "b": 3, "c": 10}
    racing, wanted = next_seeds(ranking, {"base": 3, "a": 3, "b": 3, "c": 3}, most=3)
    assert racing == [] and wanted == {"base": 3, "a": 3, "b": 3, "c": 3}  # a fixed count never races


def test_per_class_recall_resamples_match_the_full_product():
    """The one-part-per-item path (mean per-class recall) gives the general product's numbers."""
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 12, 400)
    scores = [ItemScores.class_recall(rng.random(400) < 0.5, labels) for _ in range(4)]
    counts = resample_counts(400, 50, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = [np.nanmean((counts @ s.hits) / (counts @ s.counts), axis=1) for s in scores]
    np.testing.assert_allclose(resampled_metrics(counts, scores), np.stack(full, axis=1), atol=1e-6)
    ones = np.ones((1, 400), dtype=np.float32)
    assert resampled_metrics(ones, scores)[0] == pytest.approx([s.value() for s in scores])
