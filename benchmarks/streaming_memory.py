"""Memory of a streamed training set: peak RSS of the driver, the Train workers and Ray Data's
task workers for a corpus of N and of factor x N items (`data.stream: true`).

    python benchmarks/streaming_memory.py [--n 2000] [--factor 4] [--workers 2]

Prints one table. A streamed set is decoded by Ray Data tasks as it flows to the workers, so
no process should grow with the corpus beyond its buffers; a set held in memory (the default
below 1 GiB decoded) would grow every worker by the decoded pixels. RSS is sampled every
0.2 s from /proc, by process title (`ray::RayTrainWorker...`, Ray Data's `ray::ReadParquet...`
and `ray::MapBatches...` tasks).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import threading
import time
from collections import defaultdict

import ray
from rich.console import Console
from rich.table import Table

from clipsweep.orchestrator.trial import epoch_history, run_trial
from clipsweep.orchestrator.trial_data import TrialData
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.synthetic import generate_synthetic

ROLES = {"ray::RayTrainWorker": "train worker", "ray::ReadParquet": "data task", "ray::MapBatches": "data task"}


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _role(pid: int) -> str | None:
    if pid == os.getpid():
        return "driver"
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        title = f.read().split(b"\0", 1)[0].decode(errors="replace")
    return next((role for prefix, role in ROLES.items() if title.startswith(prefix)), None)


class PeakRss(threading.Thread):
    """Samples every process's RSS by role until stopped; keeps each role's peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[str, float] = defaultdict(float)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    role = _role(int(entry))
                    if role is not None:
                        self.peaks[role] = max(self.peaks[role], _rss_mb(int(entry)))
                except OSError:
                    pass  # exited while we read


def measure(n: int, workers: int, root: str) -> dict[str, float]:
    corpus = generate_synthetic(os.path.join(root, f"n{n}"), n=n, seed=0, rows_per_shard=256)  # files for every worker
    data = TrialData.from_paths(corpus.split_dir("train"), corpus.tokenizer_dir)  # no benchmark: training only
    data = dataclasses.replace(data, stream=True)
    cfg = TrialConfig.from_dict({"optim": {"epochs": 1, "batch_size": 64, "warmup_steps": 2, "lr": 2e-3}})
    sampler = PeakRss()
    sampler.start()
    start = time.perf_counter()
    result = run_trial(cfg, data, workers=workers, storage_path=os.path.join(root, "runs"), name=f"n{n}", quiet=True)
    wall = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    [epoch] = epoch_history(result)
    return {"items": data.n_train, "steps": epoch["steps"], "wall": wall, **sampler.peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="scenes of the smaller corpus")
    parser.add_argument("--factor", type=int, default=4, help="the larger corpus is this many times larger")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ray.init(num_cpus=max(os.cpu_count() or 1, args.workers + 2), configure_logging=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as root:
        rows = [measure(n, args.workers, root) for n in (args.n, args.factor * args.n)]
    table = Table(title=f"Streamed training set, 1 epoch, W={args.workers}: peak RSS (MB)")
    for column in ("corpus", "training items", "steps", "driver", "train worker (max)", "data task (max)", "wall s"):
        table.add_column(column, justify="right")
    for label, row in zip(("N", f"{args.factor}N"), rows):
        table.add_row(label, str(row["items"]), str(row["steps"]), f"{row.get('driver', 0):.0f}",
                      f"{row.get('train worker', 0):.0f}", f"{row.get('data task', 0):.0f}", f"{row['wall']:.1f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
