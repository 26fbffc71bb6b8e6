"""Helpers for tests that run `clipsweep` as a separate process and stop it from outside."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from clipsweep.orchestrator.keys import PARENT_TAG, ROLE_TAG
from clipsweep.trainers.data.synthetic import SyntheticCorpus


def write_space(folder: Path, corpus: SyntheticCorpus, name: str, **sections: Any) -> Path:
    """A small sweep over `corpus` (1 Train worker, trials one at a time) as a YAML file."""
    doc = {
        "name": name,
        "data": {"train": corpus.split_dir("train"), "tokenizer": corpus.tokenizer_dir, "heldout": corpus.split_dir("heldout")},
        "trial": {"optim": {"epochs": 2, "batch_size": 64, "warmup_steps": 1, "lr": 2e-3}},
        "search_space": {"objective": {"logit_transform": {"type": "choice", "values": ["identity", "sine"]}}},
        "search": {"num_samples": 3, "seed": 0, "max_concurrent": 1},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "driver_cpus": 0.5},
        "leaderboard": {"finalists": 1, "resamples": 200, "seeds": 1},  # replicates: tests/test_sweep.py
        "storage_path": str(folder / "results"),
        "mlflow": {"tracking_uri": f"sqlite:///{folder}/mlruns.db"},
        **sections,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def clean_env() -> dict[str, str]:
    """This environment without a Ray address (the process starts its own local Ray) and without
    a terminal size (pytest-xdist's workers set COLUMNS=80): its output is a log, as in a job."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "COLUMNS", "LINES")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's `clipsweep`
    return env


def start_clipsweep(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`clipsweep ARGS` in its own session (so a signal reaches it alone), output to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "clipsweep"), *args],
            stdout=out, stderr=subprocess.STDOUT, env=env or clean_env(), start_new_session=True,
        )  # fmt: skip


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, process: subprocess.Popen | None = None) -> Any:
    """Polls `condition` until it returns something truthy; fails if `process` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited with {process.returncode} before {what}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def sweep_runs(tracking_uri: str, experiment_name: str) -> tuple[list[Run], list[Run]]:
    """(parent runs, child runs) of an MLflow experiment; empty before the sweep creates it."""
    client = MlflowClient(tracking_uri=tracking_uri)
    if tracking_uri.startswith("sqlite:///") and not os.path.exists(tracking_uri.removeprefix("sqlite:///")):
        return [], []
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return [], []
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(ROLE_TAG) == "sweep"]
    children = [r for r in runs if PARENT_TAG in r.data.tags]
    return parents, children


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (read from /proc: Ray's GCS, raylet and workers of a local Ray)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited while we read
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """The pids that still exist and are not zombies."""
    living = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    living.add(pid)
        except OSError:
            pass
    return living

