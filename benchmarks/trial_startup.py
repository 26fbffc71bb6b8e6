"""Where a trial's start-up goes: the seconds between Tune starting a trial and its first batch.

    python benchmarks/trial_startup.py [--trials 3] [--n 2000]

Runs a sweep of `--trials` one-epoch trials one at a time (W = 1, the demo's resources) with
CLIPSWEEP_STARTUP_LOG set, so the trial's driver and its Train worker log wall-clock marks
(`trainers/startup.py`), and reads them back with the MLflow child run's start (when the
tracker saw Tune start the trial) and its first metric (when the report reached the driver).
Ray's own phases between our marks are named by what runs there: the Train controller, its
placement group and the worker actor between "dataset built" and the worker process's start;
the worker's imports (torch, this package, unpickling the loop's config) and Ray Train's
process-group set-up between the process's start and the loop's first line. With
`--trainer trial_actor` (the default for one worker) the loop runs in the Tune actor and
those two rows are what is left of them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

import ray
from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.table import Table
from sweep_overhead import space_doc, write_space

from clipsweep import Sweep
from clipsweep.trainers.startup import LOG_ENV

# (phase, from mark, to mark): the marks of one trial, in the order they happen.
PHASES = [
    ("Tune: trial start -> trainable entered (trial actor)", "trial_start", "trainable_start"),
    ("driver: checks + Ray Dataset built", "trainable_start", "dataset_built"),
    ("Train controller + placement group + worker actor", "dataset_built", "process_start"),
    ("worker: imports + Ray Train + process group", "process_start", "loop_enter"),
    ("worker: model + objective built", "loop_enter", "model_built"),
    ("worker: training data ready (in memory: decoded)", "model_built", "data_ready"),
    ("worker: eval suite loaded", "data_ready", "suite_loaded"),
    ("worker: first batch", "suite_loaded", "first_batch"),
    ("worker: first step", "first_batch", "first_step"),
    ("worker: rest of epoch 1", "first_step", "epoch_trained"),
    ("worker: cheap-tier evaluation", "epoch_trained", "epoch_scored"),
    ("worker: checkpoint + report", "epoch_scored", "reported"),
    ("report reaches the driver's MLflow", "reported", "first_metric"),
]
STARTUP = ("trial_start", "first_batch")  # what the trial spends before it trains


def _space(n: int, trials: int, trainer: str, folder: str) -> str:
    """`sweep_overhead`'s sweep with one-epoch trials one at a time, no scheduler, no replicates."""
    doc = space_doc(n, trials, 1, folder)
    doc["search"]["max_concurrent"] = 1
    doc["resources"]["trainer"] = trainer
    doc.update(name="trial-startup", scheduler={"name": "none"}, leaderboard={"seeds": 1, "finalists": 1})
    return write_space(doc, folder)


def _trials(log: str, result) -> list[dict[str, float]]:
    """Each trial's marks by name (seconds, wall clock), in start order."""
    with open(log) as f:
        marks = sorted((json.loads(line) for line in f), key=lambda m: m["t"])
    starts = [m["t"] for m in marks if m["event"] == "trainable_start"]
    client = MlflowClient(tracking_uri=result.tracking_uri)
    runs = sorted((client.get_run(r) for r in result.trials()["run_id"]), key=lambda run: run.info.start_time)
    trials = []
    for i, run in enumerate(runs):
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        mine = [m for m in marks if starts[i] <= m["t"] < end]  # one trial at a time: its window
        found = {m["event"]: m["t"] for m in mine}
        # A trial trained in its (reused) Tune actor has no process of its own: no Train row
        found["process_start"] = max(next(m["process_start"] for m in mine if m["event"] == "loop_enter"), found["dataset_built"])
        found["trial_start"] = run.info.start_time / 1000
        found["first_metric"] = min(m.timestamp for m in client.get_metric_history(run.info.run_id, "loss/total")) / 1000
        trials.append(found)
    return trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="synthetic scenes (about 90%% train)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--trainer", default="auto", choices=["auto", "trial_actor", "torch_trainer"], help="resources.trainer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        log = os.path.join(folder, "startup.jsonl")
        os.environ[LOG_ENV] = log  # before Ray starts: its workers inherit it
        result = Sweep.from_yaml(_space(args.n, args.trials, args.trainer, folder)).run()
        trials = _trials(log, result)
    ray.shutdown()
    table = Table(title=f"start-up of {len(trials)} one-epoch trials, one at a time, W=1, {os.cpu_count()} cores (seconds)")
    for column in ("phase", *[f"trial {i}" for i in range(len(trials))], "median"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for name, start, end in [*PHASES, ("start-up: trial start -> first batch", *STARTUP)]:
        values = [t[end] - t[start] for t in trials]
        if name.startswith("start-up"):
            table.add_section()
        table.add_row(name, *[f"{v:.1f}" for v in values], f"{statistics.median(values):.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
