"""Sweeps that survive a dead trial process, a dead driver, Ctrl-C and SIGTERM.

The sweep runs as `clipsweep run` in a separate process (its own local Ray), stopped from
outside as a lost node, a lost head or a person would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sweep_processes import alive, descendants, start_clipsweep, sweep_runs, wait_for, write_space

from clipsweep import SweepResult
from clipsweep.orchestrator.keys import BEST_CHECKPOINT_TAG, NODES_TAG, STATUS_TAG
from clipsweep.orchestrator.search import load_study
from clipsweep.orchestrator.sweep import sigterm_as_sigint
from clipsweep.trainers.retention import kept_epochs


def _steps(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "loss/total"))


def _trial_actors(pid: int) -> list[int]:
    """Tune trial actors below `pid`, where one-worker trials train (Ray titles them
    `ray::ImplicitFunc...`, Tune's class for function trainables)."""
    found = []
    for child in alive(descendants(pid)):
        with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as f:
            if f.read().startswith(b"ray::ImplicitFunc"):
                found.append(child)
    return found


def _scores(uri: str, name: str) -> int:
    """How many epochs trial `name` has reported while its child run is RUNNING (0 otherwise)."""
    _, children = sweep_runs(uri, "it-lifecycle")
    client = MlflowClient(tracking_uri=uri)
    running = [r for r in children if r.info.run_name == name and r.info.status == "RUNNING" and "score" in r.data.metrics]
    return len(client.get_metric_history(running[0].info.run_id, "score")) if running else 0


@pytest.mark.integration
def test_a_sweep_survives_a_dead_worker_a_dead_driver_and_ctrl_c(small_corpus, tmp_path):
    """One sweep of 2 trials of 3 epochs, stopped three ways and resumed twice:

    1. trial 0's process (its Tune actor, where a one-worker trial trains) is SIGKILLed after
       epoch 1: Tune starts it again and it continues from the epoch-1 checkpoint
       (failure_config.max_failures=1) inside the same trial and MLflow run;
    2. the driver is SIGKILLed after trial 1's epoch 1: `clipsweep run --resume` goes on;
    3. that resumed driver gets Ctrl-C after trial 1's epoch 2: it exits 130 within 60 s, leaves
       no Ray process and no RUNNING run; a second `--resume` finishes the sweep.

    At the end each trial ran exactly once, each epoch was reported once (no trial started
    again from scratch), and every MLflow run is closed. Trial 1 is two-stage (stage 1 is epoch
    1): the study, restored with the driver twice, holds only its final-stage scores.
    """
    space = write_space(
        tmp_path, small_corpus, "it-lifecycle",
        trial={"optim": {"epochs": 3, "batch_size": 64, "warmup_steps": 1, "lr": 2e-3},
               "schedule": {"stage1_epochs": 1, "stage1_loss": "simclr"}},
        search_space={"schedule": {"kind": {"type": "choice", "values": ["two_stage"]}}},
        search={"algorithm": "random", "num_samples": 2, "seed": 0, "max_concurrent": 1},
        scheduler={"name": "none"},  # no early stop before the last epoch: each trial reaches the point we stop it at
        failure_config={"max_failures": 1},
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)

    first = start_clipsweep(["run", str(space)], tmp_path / "first.log")
    wait_for(lambda: _scores(uri, "trial-00-baseline") >= 1, 300, "trial 0's epoch 1", first)
    workers = wait_for(lambda: _trial_actors(first.pid), 60, "trial 0's actor", first)
    os.kill(workers[0], signal.SIGKILL)  # a lost spot node: no cleanup at all

    wait_for(lambda: _scores(uri, "trial-01-search") >= 1, 400, "trial 1's epoch 1", first)
    head = descendants(first.pid)
    os.killpg(first.pid, signal.SIGKILL)  # the head dies: the driver and its local Ray, without a word
    first.wait(30)
    for pid in alive(head):  # whatever Ray started outside the driver's process group dies with the head too
        os.kill(pid, signal.SIGKILL)
    _, children = sweep_runs(uri, "it-lifecycle")
    assert {r.info.run_name: r.info.status for r in children} == {"trial-00-baseline": "FINISHED", "trial-01-search": "RUNNING"}
    trial_1_run = next(r.info.run_id for r in children if r.info.run_name == "trial-01-search")

    second = start_clipsweep(["run", "--resume", str(tmp_path / "results")], tmp_path / "second.log")
    wait_for(lambda: _scores(uri, "trial-01-search") >= 2, 400, "trial 1's epoch 2", second)
    ray_processes = descendants(second.pid)  # GCS, raylet, dashboard, trial driver and worker, ...
    assert len(ray_processes) >= 3
    sent = time.monotonic()
    os.kill(second.pid, signal.SIGINT)  # Ctrl-C in the terminal
    code = second.wait(90)
    took = time.monotonic() - sent
    log = (tmp_path / "second.log").read_text()
    assert code == 130 and took < 60, (code, took, log[-3000:])
    assert "resuming it-lifecycle-" in log and "clipsweep run --resume" in log
    time.sleep(2)  # Ray's processes notice their parent is gone
    assert not alive(ray_processes), [open(f"/proc/{p}/cmdline").read() for p in alive(ray_processes)]
    parents, children = sweep_runs(uri, "it-lifecycle")
    assert [p.info.status for p in parents] == ["KILLED"]
    status = {r.info.run_name: (r.info.status, r.data.tags[STATUS_TAG]) for r in children}
    assert status == {"trial-00-baseline": ("FINISHED", "completed"), "trial-01-search": ("KILLED", "killed")}

    third = start_clipsweep(["run", "--resume", str(tmp_path / "results")], tmp_path / "third.log")
    assert third.wait(600) == 0, (tmp_path / "third.log").read_text()[-3000:]
    log = (tmp_path / "third.log").read_text()
    board = log[log.index("Leaderboard") :]  # written to a file: rich must not cut it to 80 columns
    assert "…" not in board and "mean rank" in board, board
    for name in ("first.log", "second.log", "third.log"):  # the raylet's warnings stay in Ray's logs
        text = (tmp_path / name).read_text()
        assert "(raylet)" not in text and "performance bottleneck" not in text, name
        assert "asha" not in text.lower(), name  # `scheduler: {name: none}`: no ASHA anywhere
    assert "no scheduler" in (tmp_path / "first.log").read_text()

    parents, children = sweep_runs(uri, "it-lifecycle")
    assert len(parents) == 1 and (parents[0].info.status, parents[0].data.tags[STATUS_TAG]) == ("FINISHED", "completed")
    assert sorted(r.info.run_name for r in children) == ["trial-00-baseline", "trial-01-search"]  # one run each
    runs = {r.info.run_name: r for r in children}
    assert runs["trial-01-search"].info.run_id == trial_1_run  # the resumed trial continued its own run
    for name, run in runs.items():
        assert (run.info.status, run.data.tags[STATUS_TAG]) == ("FINISHED", "completed"), name
        # Epochs 1, 2, 3, each once: after the worker's death, the driver's and Ctrl-C alike,
        # training went on from the last checkpoint instead of starting again.
        assert _steps(client, run.info.run_id) == [1, 2, 3], name
        assert run.data.tags[NODES_TAG]
    for run in [*parents, *children]:  # what MLflow records of the sweep never mentions ASHA either
        records = {**run.data.params, **run.data.tags}
        assert not [k for k, v in records.items() if "asha" in f"{k}={v}".lower()], run.info.run_name
    assert parents[0].data.params["scheduler.name"] == "none" and "scheduler.grace_period" not in parents[0].data.params
    # `checkpoints.keep: best_and_latest` (the default) through a worker's death, the driver's
    # and Ctrl-C: each trial keeps its latest (epoch 3) and its best by score, nothing else.
    for name, run in runs.items():
        scores = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "score")}
        best = run.data.tags[BEST_CHECKPOINT_TAG]
        kept = sorted(os.listdir(os.path.dirname(best)))
        wanted = {f"checkpoint_{epoch:06d}" for epoch in kept_epochs(scores, "best_and_latest")}
        assert set(kept) == wanted and "checkpoint_000003" in kept and os.path.basename(best) in kept, (name, kept, scores)
    result = SweepResult.load(str(tmp_path / "results"))
    assert result.status() == "completed"
    scores = {m.step: m.value for m in client.get_metric_history(trial_1_run, "score")}
    [studied] = load_study(result.path).trials  # the baseline (joint) lies outside the space
    assert studied.state == TrialState.COMPLETE and studied.params == {"schedule.kind": "two_stage"}
    assert studied.intermediate_values == pytest.approx({1: scores[2], 2: scores[3]})  # not stage 1's epoch 1
    assert studied.value == pytest.approx(scores[3])


def _completed(uri: str, experiment: str) -> list[str]:
    """Names of the child runs that ended `completed`."""
    return sorted(r.info.run_name for r in sweep_runs(uri, experiment)[1] if r.data.tags.get(STATUS_TAG) == "completed")


@pytest.mark.integration
def test_ctrl_c_while_replicates_train_stops_the_sweep_and_resume_trains_only_what_is_missing(small_corpus, tmp_path):
    """Ctrl-C after the search, while the baseline's seed replicates train: the command exits 130
    and the sweep is KILLED (not ranked on the seeds it happened to have); `--resume` trains only
    the replicate that did not finish, and the leaderboard ranks the baseline on all 3 seeds.
    (Adaptive seeds, {min: 3, max: 4}: the baseline alone is never undecided, so it stops at 3.)"""
    space = write_space(
        tmp_path, small_corpus, "it-replicates",
        trial={"optim": {"epochs": 1, "batch_size": 32, "warmup_steps": 1, "lr": 2e-3}},
        search={"num_samples": 1, "seed": 0},  # the baseline alone; its replicates train one at a time
        leaderboard={"finalists": 1, "resamples": 200, "seeds": {"min": 3, "max": 4}},
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    first = start_clipsweep(["run", str(space)], tmp_path / "first.log")
    wait_for(lambda: "trial-00-baseline-seed1" in _completed(uri, "it-replicates"), 400, "replicate seed 1", first)
    os.kill(first.pid, signal.SIGINT)
    assert first.wait(90) == 130, (tmp_path / "first.log").read_text()[-3000:]
    parents, _ = sweep_runs(uri, "it-replicates")
    assert [p.info.status for p in parents] == ["KILLED"]
    assert _completed(uri, "it-replicates") == ["trial-00-baseline", "trial-00-baseline-seed1"]

    second = start_clipsweep(["run", "--resume", str(tmp_path / "results")], tmp_path / "second.log")
    assert second.wait(600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    assert "training 1 seed replicate of 1 finalist" in (tmp_path / "second.log").read_text()
    assert _completed(uri, "it-replicates") == ["trial-00-baseline", "trial-00-baseline-seed1", "trial-00-baseline-seed2"]
    board = SweepResult.load(str(tmp_path / "results")).leaderboard().set_index("variant")
    assert board.loc["trial-00-baseline", "seeds"] == 3


def test_sigterm_stops_a_sweep_the_way_ctrl_c_does():
    # Tune's handler for SIGINT stops the sweep and closes its runs; SIGTERM must take that path.
    before = signal.getsignal(signal.SIGTERM)
    previous_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        with sigterm_as_sigint(), pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
    assert signal.getsignal(signal.SIGTERM) is before


def test_resume_of_a_path_with_no_sweep_fails_before_ray(tmp_path, capsys):
    from clipsweep.orchestrator.cli import main

    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no clipsweep_sweep.json here or one folder down" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path), "--num-samples", "3"]) == 2
    assert "drop --num-samples" in capsys.readouterr().err
