"""A whole sweep on a real local Ray with a real SQLite MLflow store: 3 trials, 2 epochs each,
then one seed replicate of the baseline (`leaderboard.seeds: {min: 2, max: 3}`: an adaptive race
whose first look finds no undecided finalist, so no third seed is trained and the race's
full-tier scores are ranked without evaluating again).

The trials run one at a time (the test's Ray has 4 logical CPUs, 2 kept for Ray Data, and a
trial needs 1.5), in the order the searcher hands them out, so ASHA's decisions are fixed:
  trial 0, the baseline, learns (lr 2e-3) and is first at every rung: completes;
  trial 1 cannot learn (lr 1e-9): at rung 1 it scores the untrained model, below the
      baseline's epoch 1, and is stopped early;
  trial 2 diverges (lr 1e30): NaN loss, the worker raises, the trial fails.
The baseline is then the only finalist; its replicate trains with optim.seed 1.
The study sees the three as COMPLETE, PRUNED and FAIL. Optuna's own suggestions are exercised by
tests/test_faults.py (random searcher, no scheduler) and tests/test_cluster.py.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from clipsweep import Sweep, SweepResult
from clipsweep.orchestrator.checkpoint_refs import reference_note
from clipsweep.orchestrator.cli import main
from clipsweep.orchestrator.footprint import ARTIFACTS_METRIC, FOLDER_METRIC, folder_bytes
from clipsweep.orchestrator.keys import (
    BEST_CHECKPOINT_TAG,
    NOTE_TAG,
    OVERRIDES_TAG,
    PARENT_TAG,
    REASON_TAG,
    REPLICATE_OF_TAG,
    ROLE_TAG,
    SEED_TAG,
    STATUS_TAG,
    TRIAL_TAG,
)
from clipsweep.orchestrator.search import load_study
from clipsweep.orchestrator.sweep_cli import ranked_table

pytestmark = pytest.mark.usefixtures("ray_local")  # integration: see conftest.py


@pytest.fixture(scope="module")
def finished_sweep(small_corpus, tmp_path_factory) -> tuple[SweepResult, str]:
    tmp = tmp_path_factory.mktemp("sweep")
    doc = {
        "name": "it-sweep",
        "data": {
            "train": small_corpus.split_dir("train"),
            "tokenizer": small_corpus.tokenizer_dir,
            "heldout": small_corpus.split_dir("heldout"),
        },
        # batch 32: 17 steps an epoch, so the baseline is well above the untrained model at epoch 1
        # (at batch 64 it is not, on this 546-item corpus: 0.152 vs 0.164 with seed 0)
        "trial": {"optim": {"epochs": 2, "batch_size": 32, "warmup_steps": 1, "lr": 2e-3}},
        "search_space": {  # the learning rates make every explicit point a point of the space
            "objective": {"logit_transform": {"type": "choice", "values": ["identity", "sine"]}},
            "optim": {"lr": {"type": "choice", "values": [2e-3, 1e-9, 1e30]}},
        },
        "points_to_evaluate": [{"optim.lr": 1e-9}, {"optim.lr": 1e30}],
        "search": {"num_samples": 3, "seed": 0, "max_concurrent": 1},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "leaderboard": {"seeds": {"min": 2, "max": 3}},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "driver_cpus": 0.5},
        "storage_path": str(tmp / "results"),
        "mlflow": {"tracking_uri": f"sqlite:///{tmp}/mlruns.db"},
    }
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Sweep.from_yaml(str(path)).run(), f"sqlite:///{tmp}/mlruns.db"


def _children(client: MlflowClient, result: SweepResult) -> dict[str, object]:
    parent = client.get_run(result.mlflow_parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{result.mlflow_parent_run_id}'")
    return {run.data.tags[TRIAL_TAG]: run for run in runs}


def test_one_parent_with_one_child_per_trial(finished_sweep):
    result, uri = finished_sweep
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("it-sweep")
    parents = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'")
    assert [p.info.run_id for p in parents] == [result.mlflow_parent_run_id]
    assert parents[0].info.status == "FINISHED" and result.status() == "completed"
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_parent_run_id)}
    assert {"sweep.yaml", "search_space.json", "trials.json"} <= artifacts
    children = _children(client, result)
    assert sorted(children) == ["trial-00-baseline", "trial-00-baseline-seed1", "trial-01-point", "trial-02-point"]
    replicate = children["trial-00-baseline-seed1"].data
    assert replicate.tags[ROLE_TAG] == "replicate" and replicate.tags[REPLICATE_OF_TAG] == "trial-00-baseline"
    assert replicate.tags[SEED_TAG] == "1" and replicate.params["optim.seed"] == "1"
    assert children["trial-00-baseline"].data.tags[SEED_TAG] == "0"
    beside = f"{uri.removeprefix('sqlite:///').rsplit('/', 1)[0]}/mlartifacts/"  # the store's folder, not the cwd's
    for run in [parents[0], *children.values()]:
        assert urlparse(run.info.artifact_uri).path.startswith(beside), run.info.artifact_uri


def test_trials_end_as_asha_and_the_worker_decided(finished_sweep):
    result, uri = finished_sweep
    children = _children(MlflowClient(tracking_uri=uri), result)
    status = {name: (run.data.tags[STATUS_TAG], run.info.status) for name, run in children.items()}
    assert status["trial-00-baseline"] == status["trial-00-baseline-seed1"] == ("completed", "FINISHED")
    assert status["trial-01-point"] == ("stopped_early", "FINISHED")
    assert children["trial-01-point"].info.run_name == "trial-01-point (stopped 1/2)"  # visible in the runs table
    assert children["trial-00-baseline"].info.run_name == "trial-00-baseline"
    assert status["trial-02-point"] == ("failed", "FAILED")
    assert "FloatingPointError" in children["trial-02-point"].data.tags[REASON_TAG]
    notes = {name: run.data.tags["mlflow.note.content"] for name, run in children.items()}  # the run page says how it ended
    assert notes["trial-00-baseline"].startswith("completed: 2/2 epochs\n\nbest checkpoint: `")
    assert notes["trial-01-point"].startswith("**stopped early** by the scheduler after epoch 1 of 2")
    assert notes["trial-02-point"].startswith("**failed**: `") and "FloatingPointError" in notes["trial-02-point"]
    assert json.loads(children["trial-01-point"].data.tags[OVERRIDES_TAG]) == {"optim.lr": 1e-9}
    assert json.loads(children["trial-00-baseline"].data.tags[OVERRIDES_TAG]) == {}
    assert children["trial-02-point"].data.params["optim.lr"] == "1e+30"


def test_the_study_learns_what_asha_and_the_worker_decided(finished_sweep):
    """The baseline and both points lie inside the space, so the study holds all three: the
    stopped trial as PRUNED with its epoch-1 value, the failed one as FAIL, the baseline as
    COMPLETE with its last final-stage score."""
    result, uri = finished_sweep
    study = load_study(result.path)
    children = _children(MlflowClient(tracking_uri=uri), result)
    by_lr = {t.params["optim.lr"]: t for t in study.trials}
    assert sorted(by_lr) == [1e-9, 2e-3, 1e30]
    assert by_lr[2e-3].state == TrialState.COMPLETE
    assert by_lr[2e-3].value == pytest.approx(children["trial-00-baseline"].data.metrics["score"], abs=1e-6)
    assert sorted(by_lr[2e-3].intermediate_values) == [1, 2]
    assert by_lr[1e-9].state == TrialState.PRUNED and sorted(by_lr[1e-9].intermediate_values) == [1]
    assert by_lr[1e30].state == TrialState.FAIL


def test_every_epoch_is_a_metric_step_with_benchmarks(finished_sweep):
    result, uri = finished_sweep
    client = MlflowClient(tracking_uri=uri)
    for name, run in _children(client, result).items():
        if run.data.tags[STATUS_TAG] == "failed":
            continue
        history = client.get_metric_history(run.info.run_id, "loss/total")
        epochs = int(run.data.tags["clipsweep.epochs_run"])
        assert sorted(m.step for m in history) == list(range(1, epochs + 1)), name
        for key in ("bench/mean_primary", "bench/colour/primary", "bench/retrieval_long/i2t_R_at_1", "score"):
            assert 0.0 <= run.data.metrics[key] <= 1.0, (name, key)
        details = {k: v for k, v in run.data.metrics.items() if k.startswith(("bench/", "full/"))}
        assert details and all(v == round(v, 4) for v in details.values()), name  # 4 digits, not 16
        assert "final_stage_score" not in run.data.metrics and "final_stage_epoch" not in run.data.metrics  # score once
        assert run.data.params["optim.precision"] == "fp32"  # what a CPU trial trains in, not the bf16 it asked for
        # The best epoch's checkpoint stays in storage; MLflow holds its URI, not a copy of it.
        assert client.list_artifacts(run.info.run_id) == [], name
        best = run.data.tags[BEST_CHECKPOINT_TAG]
        assert os.path.isfile(os.path.join(best, "trial.pt")) and reference_note(best) in run.data.tags[NOTE_TAG], name


def test_sweep_result_trials_match_the_child_runs(finished_sweep, capfd, monkeypatch):
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)  # as a Python session has it
    result, uri = finished_sweep
    capfd.readouterr()
    assert result.spec().name == "it-sweep" and result.ranked().ranking is not None  # both download artifacts
    assert "Downloading artifacts" not in "".join(capfd.readouterr())  # MLflow's bar stays off the console
    children = _children(MlflowClient(tracking_uri=uri), result)
    frame = result.trials()
    assert sorted(frame["run_id"]) == sorted(run.info.run_id for run in children.values())
    for row in frame.itertuples():
        assert row.status == children[row.name].data.tags[STATUS_TAG]
    reopened = SweepResult.load(result.path.rsplit("/", 1)[0])  # the storage path: newest sweep in it
    assert reopened == result
    best = result.best_config()
    assert best.optim.lr == 2e-3  # a completed trial, not the one that could not learn
    ranked = ranked_table(result)
    assert ranked.row_count == 4


def test_the_sweep_ends_with_a_leaderboard_in_mlflow_and_on_disk(finished_sweep):
    result, uri = finished_sweep
    client = MlflowClient(tracking_uri=uri)
    files = {"leaderboard.csv", "leaderboard.md", "leaderboard.html", "leaderboard_heatmap.png", "leaderboard_forest.png",
             "param_importance.png", "param_parallel.png", "param_importance.csv"}  # fmt: skip
    logged = {a.path.split("/", 1)[1] for a in client.list_artifacts(result.mlflow_parent_run_id, "leaderboard")}
    assert files | {"scores.npz", "finalists.json"} <= logged
    assert files <= set(os.listdir(os.path.join(result.path, "leaderboard")))
    with open(os.path.join(result.path, "leaderboard", "leaderboard_heatmap.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "fewer than the 8" in result.param_importances().attrs["note"]  # 1 completed trial in the space
    frame = result.leaderboard()
    # The finalists: the baseline (the reference) and the completed trials; never the failed one.
    assert frame.loc[frame["reference"], "variant"].tolist() == ["trial-00-baseline"]
    assert "trial-02-point" not in set(frame["variant"])
    reference = frame.set_index("variant").loc["trial-00-baseline"]
    assert reference["aggregate_diff"] == 0 and reference["seeds"] == 2 and reference["interval"] == "seeds + items"
    assert reference["aggregate_seed_sd"] > 0  # two seeds, two different runs
    for bench in ("shape", "colour_shape", "retrieval_long"):
        assert ((frame[f"{bench}_lo"] <= frame[bench]) & (frame[bench] <= frame[f"{bench}_hi"])).all()
    csv = pd.read_csv(os.path.join(result.path, "leaderboard", "leaderboard.csv"))
    numeric = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    assert list(csv["variant"]) == list(frame["variant"])
    np.testing.assert_allclose(csv[numeric].to_numpy(float), frame[numeric].to_numpy(float), rtol=1e-12, equal_nan=True)
    for name in ("trial-00-baseline", "trial-00-baseline-seed1"):  # every scored run, with its variant's standing
        metrics = _children(client, result)[name].data.metrics
        assert metrics["leaderboard/seeds"] == 2 and metrics["leaderboard/aggregate_diff_pts"] == 0
        assert 0.0 <= metrics["full/mean_primary"] <= 1.0
    assert result.trials().set_index("name").loc["trial-00-baseline-seed1", "replicate_of"] == "trial-00-baseline"
    assert "trial-00-baseline-seed2" not in set(result.trials()["name"])  # nothing undecided: the race stops at min
    assert _children(client, result)["trial-00-baseline"].data.tags["clipsweep.verdict"] == "reference"
    # What the sweep keeps, logged on its parent run (the leaderboard is the only MLflow artifact)
    parent = client.get_run(result.mlflow_parent_run_id).data.metrics
    assert 0 < parent[FOLDER_METRIC] <= folder_bytes(result.path)  # measured before the test read anything back
    assert parent[ARTIFACTS_METRIC] > 0
    parent = client.get_run(result.mlflow_parent_run_id).data.tags  # who won, on the page MLflow opens
    winner = frame.iloc[0]["variant"]
    assert parent["winner"] == winner and parent["mlflow.note.content"].startswith(f"**Winner: {winner}**")
    assert parent["best_trial"].startswith("trial-00-baseline (cheap-tier score ")  # the one completed trial
    assert parent["leaderboard"] == f"{result.path}/leaderboard/leaderboard.html"
    assert "±" in parent["winner_aggregate"]


def test_leaderboard_command_rebuilds_from_the_parent_run(finished_sweep, tmp_path, monkeypatch, capsys):
    result, uri = finished_sweep
    monkeypatch.chdir(tmp_path)  # the parent run id alone: no experiment folder given
    before = result.leaderboard()
    assert main(["leaderboard", result.mlflow_parent_run_id, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "Leaderboard" in out and "trial-00-baseline" in out and "Holm" in out
    pd.testing.assert_frame_equal(result.leaderboard(), before)  # stored scores ranked again: same numbers
    assert main(["leaderboard", "0123456789abcdef0123456789abcdef", "--tracking-uri", uri]) == 2
    assert "neither a path nor an MLflow run" in capsys.readouterr().err
