"""Training throughput: the Ray Train loop (W = 1, 2) and the trial-actor loop vs a plain PyTorch loop.

    python benchmarks/train_throughput.py [--n 10000] [--epochs 3] [--batch 256] [--workers 1 2]

The plain loop trains the same tiny dual encoder with the same objective and global batch on
images already decoded in memory, in one process with all cores. The Ray rows are the
`samples_per_s` the workers report (training steps only, no evaluation), median over epochs
after the first. The ratio is what orchestration plus streaming data costs on this machine;
the plain loop run as a Ray task and inside a Ray Train worker separates Ray's and Train's
fixed costs from what clipsweep's loop and data pipeline add.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile

import plain
import ray
import ray.train
import torch
from plain import in_memory, plain_epochs
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from rich.console import Console
from rich.table import Table

from clipsweep.orchestrator.ray_start import local_cpus, start_ray
from clipsweep.orchestrator.trial import epoch_history, run_trial, run_trial_in_actor
from clipsweep.orchestrator.trial_data import TrialData
from clipsweep.trainers.config import TrialConfig


def plain_loop(cfg: TrialConfig, data: TrialData, epochs: int) -> float:
    """Samples/s of the plain loop over pre-decoded batches (median epoch after the first)."""
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, epochs=epochs))
    rates = [e["samples_per_s"] for e in plain_epochs(cfg, data, in_memory(cfg, data))]
    return statistics.median(rates[1:] or rates)


def _plain_in_task(cfg: TrialConfig, data: TrialData, epochs: int, threads: int) -> float:
    torch.set_num_threads(threads)
    return plain_loop(cfg, data, epochs)


def _plain_in_train_worker(config: dict) -> None:
    torch.set_num_threads(config["threads"])
    rate = plain_loop(config["cfg"], config["data"], config["epochs"])
    with tempfile.TemporaryDirectory() as empty:  # Train V2 keeps metrics only with a checkpoint
        ray.train.report({"samples_per_s": rate}, checkpoint=ray.train.Checkpoint.from_directory(empty))


def _loop_in_task(cfg: TrialConfig, data: TrialData, run_dir: str, cores: int) -> float:
    reports: list[dict] = []
    run_trial_in_actor(cfg, data, run_dir, reports.append, cpus=cores)
    rates = [m["samples_per_s"] for m in reports]
    return statistics.median(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)  # the default corpus: epochs long enough to amortise start-up
    parser.add_argument("--epochs", type=int, default=5)  # the median of 4 epochs after the first: runs differ by ~3%
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray Train worker counts to measure")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    cfg = TrialConfig.from_dict({"optim": {"epochs": args.epochs, "batch_size": args.batch, "warmup_steps": 5}})
    with tempfile.TemporaryDirectory() as cache:
        corpus = TrialData.synthetic(n=args.n, cache_dir=cache)
        data = TrialData(corpus.train, corpus.tokenizer_dir, None, corpus.n_train, corpus.n_classes)  # no evaluation
        torch.set_num_threads(cores)
        baseline = plain_loop(cfg, data, args.epochs)
        rows = [("plain PyTorch loop, data in memory", cores, baseline)]
        start_ray(local_cpus(cores), quiet=False)
        ray.cloudpickle.register_pickle_by_value(plain)  # Ray's workers cannot import this folder's modules
        # The same plain loop as a Ray task: what Ray's own processes (raylet, GCS, dashboard)
        # and a worker's niceness cost before any Train or Data machinery runs.
        in_task = ray.remote(num_cpus=cores)(_plain_in_task).remote(cfg, data, args.epochs, cores)
        rows.append(("plain PyTorch loop inside a Ray task", cores, ray.get(in_task)))
        # ... and inside a 1-worker TorchTrainer: what Train's worker process costs on its own.
        in_worker = TorchTrainer(
            _plain_in_train_worker,
            train_loop_config={"cfg": cfg, "data": data, "epochs": args.epochs, "threads": cores},
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": cores}),
            run_config=RunConfig(storage_path=os.path.join(cache, "runs"), name="plain"),
        ).fit()
        rows.append(("plain PyTorch loop inside a Ray Train worker", cores, in_worker.metrics["samples_per_s"]))
        # The sweep's default for one worker: the same loop in a Ray actor/task, no TorchTrainer.
        in_actor = ray.remote(num_cpus=cores)(_loop_in_task).remote(cfg, data, os.path.join(cache, "runs", "actor"), cores)
        rows.append(("clipsweep loop in a Ray task (a sweep's trial actor, W=1)", cores, ray.get(in_actor)))
        for workers in args.workers:
            cpus = cores / workers
            result = run_trial(cfg, data, workers=workers, storage_path=os.path.join(cache, "runs"), name=f"w{workers}", cpus_per_worker=cpus)
            rates = [m["samples_per_s"] for m in epoch_history(result)]
            rows.append((f"Ray Train W={workers}, {cpus:g} CPU/worker, clipsweep loop", cores, statistics.median(rates[1:] or rates)))
    table = Table(title=f"training samples/s: tiny dual encoder, global batch {args.batch}, {data.n_train} items, {cores} cores")
    for column in ("loop", "cores", "samples/s", "vs plain"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    for name, c, rate in rows:
        table.add_row(name, str(c), f"{rate:,.0f}", f"{rate / baseline:.2f}x")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
