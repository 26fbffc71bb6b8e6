"""Sweep overhead: N trials through clipsweep (Tune + Train + MLflow) vs the same N configs
trained one after another by the plain loop (no Ray, no MLflow).

    python benchmarks/sweep_overhead.py [--n 2000] [--trials 6] [--epochs 3]

The sweep searches only the objective's transform and temperature (knobs the plain loop
trains exactly), W = 1 per trial, 2 trials at a time on 2 cores, ASHA with grace 1 and
reduction factor 2. After it, the configs the trials actually ran (read back from MLflow) are
trained to the end by the plain loop, with the same per-epoch synthetic10 evaluation.
Start-up per trial = seconds from the trial's start to its first report, less the plain
loop's first epoch (training + evaluation) for the same config.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import yaml
from mlflow.tracking import MlflowClient
from plain import in_memory, plain_epochs
from rich.console import Console
from rich.table import Table

from clipsweep import Sweep
from clipsweep.orchestrator.trial_data import TrialData


def space_doc(n: int, trials: int, epochs: int, folder: str) -> dict:
    """The benchmark's sweep: W = 1 per trial, the demo's resources, storage and MLflow in `folder`."""
    return {
        "name": "sweep-overhead",
        "data": {"synthetic": {"n": n, "seed": 0}},
        "trial": {"optim": {"epochs": epochs, "batch_size": 128, "warmup_steps": 5}},
        "search_space": {
            "objective": {
                "logit_transform": {"type": "choice", "values": ["identity", "sine", "sigmoid_centered"]},
                "temperature": {"type": "loguniform", "low": 0.03, "high": 0.1},
            }
        },
        "search": {"num_samples": trials, "seed": 0},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "driver_cpus": 0.5},
        "storage_path": os.path.join(folder, "results"),
        "mlflow": {"tracking_uri": f"sqlite:///{folder}/mlruns.db"},
    }


def write_space(doc: dict, folder: str) -> str:
    path = os.path.join(folder, "space.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="synthetic scenes (about 90%% train)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sweep = Sweep.from_yaml(write_space(space_doc(args.n, args.trials, args.epochs, folder), folder))
        started = time.perf_counter()
        result = sweep.run()
        sweep_s = time.perf_counter() - started
        frame = result.trials()
        client = MlflowClient(tracking_uri=result.tracking_uri)
        first_report = {
            row.run_id: min(m.timestamp for m in client.get_metric_history(row.run_id, "loss/total")) / 1000
            - client.get_run(row.run_id).info.start_time / 1000
            for row in frame.itertuples()
        }
        data = TrialData.synthetic(n=args.n)
        spec = sweep.spec
        tensors = in_memory(spec.baseline, data)
        plain_s, startup = 0.0, []
        for row in frame.itertuples():
            epochs = plain_epochs(spec.config_for(row.overrides), data, tensors, evaluate=True)
            plain_s += sum(e["seconds"] for e in epochs)
            startup.append(first_report[row.run_id] - epochs[0]["seconds"])
        epochs_run = int(frame["epochs"].sum())
    planned = len(frame) * spec.max_t
    table = Table(title=f"{len(frame)} trials x {args.epochs} epochs, {data.n_train} training scenes, W=1, 2 cores")
    for column in ("what", "value"):
        table.add_column(column, justify="left" if column == "what" else "right")
    table.add_row("clipsweep sweep wall time (Tune + Train + MLflow, ASHA on)", f"{sweep_s:.0f} s")
    table.add_row("plain loop, same configs one after another, every epoch", f"{plain_s:.0f} s")
    table.add_row("ratio sweep / plain", f"{sweep_s / plain_s:.2f}x")
    table.add_row("start-up per trial (first report - plain first epoch), median", f"{statistics.median(startup):.1f} s")
    table.add_row("start-up per trial, min - max", f"{min(startup):.1f} - {max(startup):.1f} s")
    table.add_row("epochs trained / epochs without ASHA", f"{epochs_run} / {planned}")
    table.add_row("compute ASHA saved", f"{1 - epochs_run / planned:.0%}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
