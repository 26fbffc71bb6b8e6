"""Sweeps that survive a dead Train worker, a dead driver, Ctrl-C and SIGTERM.

The driver tests run `clipsweep run` as a separate process (its own local Ray) and stop it from
outside, as a person, a scheduler or a lost head node would; the worker test kills a Train
worker of a sweep running in this process's Ray.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from mlflow.tracking import MlflowClient
from ray.util.state import list_actors

from clipsweep import Sweep, SweepResult
from clipsweep.orchestrator.api import sigterm_as_sigint
from clipsweep.orchestrator.tracking import NODES_TAG, STATUS_TAG

from sweep_processes import alive, descendants, start_clipsweep, sweep_runs, wait_for, write_space


def _steps(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "loss/total"))


@pytest.mark.usefixtures("ray_local")
def test_a_killed_train_worker_restarts_from_its_checkpoint_in_the_same_run(small_corpus, tmp_path):
    space = write_space(
        tmp_path, small_corpus, "it-worker-fault",
        trial={"optim": {"epochs": 3, "batch_size": 64, "warmup_steps": 1, "lr": 2e-3}},
        search={"num_samples": 1, "max_concurrent": 1},
        failure_config={"max_failures": 1},
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    killed: list[int] = []

    def kill_a_worker_after_epoch_1() -> None:
        def reported() -> bool:
            _, children = sweep_runs(uri, "it-worker-fault")
            return any("score" in run.data.metrics for run in children)

        wait_for(reported, 300, "epoch 1's report")
        workers = [a for a in list_actors(filters=[("state", "=", "ALIVE")], detail=True) if a.class_name == "RayTrainWorker"]
        assert len(workers) == 1, workers
        os.kill(workers[0].pid, signal.SIGKILL)  # as a lost spot node: no cleanup at all
        killed.append(workers[0].pid)

    watcher = threading.Thread(target=kill_a_worker_after_epoch_1, daemon=True)
    watcher.start()
    result = Sweep.from_yaml(str(space)).run()
    watcher.join()
    assert killed, "the worker was never killed"
    client = MlflowClient(tracking_uri=uri)
    _, children = sweep_runs(uri, "it-worker-fault")
    assert len(children) == 1  # the restart happened inside the trial: one child run
    run = children[0]
    assert (run.info.status, run.data.tags[STATUS_TAG]) == ("FINISHED", "completed")
    assert _steps(client, run.info.run_id) == [1, 2, 3]  # epochs continue after the restart: none twice
    assert result.status() == "completed"


def test_a_killed_driver_is_resumed_without_rerunning_or_duplicating_trials(small_corpus, tmp_path):
    space = write_space(tmp_path, small_corpus, "it-resume")
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    first = start_clipsweep(["run", str(space)], tmp_path / "first.log")

    def second_trial_reported() -> bool:
        _, children = sweep_runs(uri, "it-resume")
        done = [r for r in children if r.info.status == "FINISHED"]
        scoring = [r for r in children if r.info.status == "RUNNING" and "score" in r.data.metrics]
        return bool(done and scoring)

    wait_for(second_trial_reported, 400, "trial 0 finished and trial 1 reporting", first)
    os.killpg(first.pid, signal.SIGKILL)  # the driver (and its session) dies without a word
    first.wait(30)
    _, before = sweep_runs(uri, "it-resume")
    interrupted = {r.info.run_name: r.info.run_id for r in before if r.info.status == "RUNNING"}
    finished_before = {r.info.run_name: _steps(client, r.info.run_id) for r in before if r.info.status == "FINISHED"}
    assert len(interrupted) == 1

    resumed = start_clipsweep(["run", "--resume", str(tmp_path / "results")], tmp_path / "resume.log")
    assert resumed.wait(600) == 0, (tmp_path / "resume.log").read_text()[-3000:]
    log = (tmp_path / "resume.log").read_text()
    assert "resuming it-resume-" in log and "Leaderboard" in log

    parents, children = sweep_runs(uri, "it-resume")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags[STATUS_TAG] == "completed"
    names = sorted(r.info.run_name for r in children)
    assert names == ["trial-00-baseline", "trial-01-search", "trial-02-search"]  # each once: none twice
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)  # none left RUNNING
    by_name = {r.info.run_name: r for r in children}
    for name, steps in finished_before.items():  # finished trials were not run again
        assert _steps(client, by_name[name].info.run_id) == steps
    (name, run_id), = interrupted.items()
    assert by_name[name].info.run_id == run_id  # the interrupted trial continued its own run ...
    steps = _steps(client, run_id)
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2  # ... from its checkpoint, no epoch redone
    assert by_name[name].data.tags[NODES_TAG]
    assert SweepResult.load(str(tmp_path / "results")).status() == "completed"


def test_ctrl_c_exits_within_a_minute_leaving_no_ray_process_and_no_running_run(small_corpus, tmp_path):
    space = write_space(tmp_path, small_corpus, "it-ctrl-c", trial={"optim": {"epochs": 4, "batch_size": 64}})
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    sweep = start_clipsweep(["run", str(space)], tmp_path / "run.log")

    def a_trial_reported() -> bool:
        _, children = sweep_runs(uri, "it-ctrl-c")
        return any("score" in r.data.metrics for r in children)

    wait_for(a_trial_reported, 300, "a trial's first report", sweep)
    ray_processes = descendants(sweep.pid)  # GCS, raylet, dashboard, the trial's driver and worker
    assert len(ray_processes) >= 3
    sent = time.monotonic()
    os.kill(sweep.pid, signal.SIGINT)  # Ctrl-C in the terminal
    code = sweep.wait(90)
    took = time.monotonic() - sent
    log = (tmp_path / "run.log").read_text()
    assert code == 130 and took < 60, (code, took, log[-2000:])
    assert "clipsweep run --resume" in log
    time.sleep(2)  # Ray's processes notice their parent is gone
    assert not alive(ray_processes), [open(f"/proc/{p}/cmdline").read() for p in alive(ray_processes)]
    parents, children = sweep_runs(uri, "it-ctrl-c")
    assert [p.info.status for p in parents] == ["KILLED"]
    assert children and {r.info.status for r in children} <= {"FINISHED", "KILLED"}
    assert "killed" in {r.data.tags[STATUS_TAG] for r in children}


def test_sigterm_stops_a_sweep_the_way_ctrl_c_does():
    # Tune's handler for SIGINT stops the sweep and closes its runs; SIGTERM must take that path.
    with sigterm_as_sigint(), pytest.raises(KeyboardInterrupt):  # Python's default SIGINT handler raises it
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_resume_of_a_path_with_no_sweep_fails_before_ray(tmp_path, capsys):
    from clipsweep.orchestrator.cli import main

    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no clipsweep_sweep.json here or one folder down" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path), "--num-samples", "3"]) == 2
    assert "drop --num-samples" in capsys.readouterr().err
