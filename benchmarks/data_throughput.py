"""Data path throughput: scene generation, and read+decode+augment through Ray Data vs plain PIL.

    python benchmarks/data_throughput.py [--n 10000] [--num-cpus 2] [--epochs 3]

Prints one table. The plain loop is the same work (Parquet read, decode, random resized crop,
tokenize, normalise to torch) in one process with no Ray; the ratio is what Ray Data's
parallelism buys (or costs) on this machine. Epoch 1 of Ray Data includes starting its workers.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import ray
import torch
from rich.console import Console
from rich.table import Table

from clipsweep.trainers.data.loading import Preprocess, build_dataset, to_torch, torch_batches
from clipsweep.trainers.data.shards import resolve_shards
from clipsweep.trainers.data.synthetic import generate_synthetic

BATCH = 256


def plain_epoch(files: list[str], preprocess: Preprocess) -> int:
    """One single-process pass: the same per-batch work as the Ray Data pipeline."""
    items = 0
    for path in files:
        table = pq.read_table(path, columns=["id", "image", "caption", "captions", "label"])
        for start in range(0, table.num_rows, BATCH):
            chunk = table.slice(start, BATCH)
            batch = {c: chunk.column(c).to_numpy(zero_copy_only=False) for c in chunk.column_names}
            items += len(to_torch(preprocess(batch))["id"])
    return items


def timed(fn) -> tuple[int, float]:
    start = time.perf_counter()
    items = fn()
    return items, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    torch.set_num_threads(1)  # as in a Ray task (OMP_NUM_THREADS=1), so both sides do the same work

    with tempfile.TemporaryDirectory() as out:
        n, seconds = timed(lambda: generate_synthetic(out, n=args.n, seed=0, tokenizer=False) and args.n)
        rows = [("generate synthetic scenes (64 px, PNG, 1 process)", "scenes/s", n / seconds, None)]
        corpus = generate_synthetic(os.path.join(out, "c"), n=args.n, seed=0)
        files = resolve_shards(corpus.split_dir("train"))
        preprocess = Preprocess(corpus.tokenizer_dir, image_size=64, train=True)

        plain = [timed(lambda: plain_epoch(files, preprocess)) for _ in range(args.epochs)]
        plain_rate = np.median([i / s for i, s in plain])
        rows.append(("plain PIL loop, 1 process (median epoch)", "images/s", plain_rate, 1.0))

        ray.init(num_cpus=args.num_cpus, configure_logging=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        dataset = build_dataset(corpus.split_dir("train"), preprocess)
        epochs = [timed(lambda: sum(len(b["id"]) for b in torch_batches(dataset, BATCH))) for _ in range(args.epochs)]
        ray.shutdown()
        rates = [i / s for i, s in epochs]
        rows.append((f"Ray Data, {args.num_cpus} CPUs, epoch 1 (cold start)", "images/s", rates[0], rates[0] / plain_rate))
        if len(rates) > 1:
            warm = float(np.median(rates[1:]))
            rows.append((f"Ray Data, {args.num_cpus} CPUs (median warm epoch)", "images/s", warm, warm / plain_rate))

    table = Table(title=f"data throughput: {args.n} scenes, {len(files)} train shards, {platform.node()} ({os.cpu_count()} cores)")
    for column in ("what", "unit", "rate", "vs plain"):
        table.add_column(column, justify="left" if column in ("what", "unit") else "right")
    for what, unit, rate, ratio in rows:
        table.add_row(what, unit, f"{rate:,.0f}", "" if ratio is None else f"{ratio:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
