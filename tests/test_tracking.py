"""The MLflow tracker on a real SQLite store, driven by the Tune callback hooks without Ray:
one parent per sweep, one child per trial, and a resumed sweep re-attaching to what MLflow holds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from clipsweep.orchestrator.keys import PARENT_TAG, SCORE, STATUS_TAG
from clipsweep.orchestrator.spec import SweepSpec
from clipsweep.orchestrator.tracking import MlflowTracker


def _spec(tmp_path) -> SweepSpec:
    return SweepSpec.from_dict({
        "name": "tracked", "trial": {"optim": {"epochs": 3}},
        "search_space": {"objective": {"temperature": {"type": "uniform", "low": 0.03, "high": 0.1}}},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlruns.db"}, "storage_path": str(tmp_path / "results"),
    })  # fmt: skip


def _trial(trial_id: str, number: int, epoch: int = 0, **config) -> SimpleNamespace:
    """What the tracker reads of a Tune trial: its id, config, tag and last result."""
    return SimpleNamespace(trial_id=trial_id, config=config, experiment_tag=f"{number}_x", last_result={"epoch": epoch})


def _report(tracker: MlflowTracker, trial: SimpleNamespace, epoch: int, score: float) -> None:
    trial.last_result = {"epoch": epoch, SCORE: score, "loss/total": 1.0 / epoch}
    tracker.on_trial_result(0, [], trial, dict(trial.last_result))


def _children(client: MlflowClient, tracker: MlflowTracker) -> dict[str, object]:
    runs = client.search_runs([tracker.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{tracker.parent_id}'")
    return {run.info.run_id: run for run in runs}


def test_a_resumed_tracker_reattaches_to_the_runs_mlflow_holds(tmp_path):
    spec = _spec(tmp_path)
    first = MlflowTracker(spec, "tracked-1")
    done, running = _trial("t0", 1, role="baseline"), _trial("t1", 2, role="search", **{"objective.temperature": 0.05})
    for trial in (done, running):
        first.on_trial_start(0, [], trial)
    for epoch in (1, 2, 3):
        _report(first, done, epoch, 0.1 * epoch)
    _report(first, running, 1, 0.4)
    first.on_trial_complete(0, [], done)
    # the driver dies here: t1's run stays RUNNING, and Tune's state may be older than MLflow's

    again = MlflowTracker(spec, "tracked-1", parent_id=first.parent_id)
    assert again.children == first.children and again.open == {"t1"}
    assert again.logged == {"t0": 3, "t1": 1} and again.planned == {"t0": 3, "t1": 3}
    assert again.best["t0"][0] == pytest.approx(0.3) and again.best["t1"][0] == 0.4
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    assert client.get_run(first.parent_id).info.status == "RUNNING"

    resumed = _trial("t1", 2, role="search", **{"objective.temperature": 0.05})
    again.on_trial_start(0, [], resumed)  # the resumed trial keeps its run: no duplicate
    _report(again, resumed, 1, 0.4)  # the epoch Tune's older state repeats: not logged twice
    _report(again, resumed, 2, 0.5)
    assert len(_children(client, again)) == 2
    history = client.get_metric_history(first.children["t1"], SCORE)
    assert [(m.step, m.value) for m in history] == [(1, 0.4), (2, 0.5)]
    again.finish([], interrupted=False)
    runs = _children(client, again)
    assert {run.info.status for run in runs.values()} == {"FINISHED", "KILLED"}  # t1 never ended: KILLED
    assert client.get_run(first.children["t1"]).data.tags[STATUS_TAG] == "killed"
    assert client.get_run(first.parent_id).info.status == "FINISHED"


def test_a_restarted_trial_closed_by_ctrl_c_runs_again_in_its_own_run(tmp_path):
    spec = _spec(tmp_path)
    tracker = MlflowTracker(spec, "tracked-1")
    trial = _trial("t0", 1, role="baseline")
    tracker.on_trial_start(0, [], trial)
    tracker.finish([], interrupted=True)  # Ctrl-C: the run is KILLED
    resumed = MlflowTracker(spec, "tracked-1", parent_id=tracker.parent_id)
    resumed.on_trial_start(0, [], trial)
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    run = client.get_run(tracker.children["t0"])
    assert run.info.status == "RUNNING" and run.data.tags[STATUS_TAG] == "running"
    assert resumed.open == {"t0"} and len(_children(client, resumed)) == 1
