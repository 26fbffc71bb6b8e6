"""Data path throughput: scene generation, and read+decode+augment through Ray Data vs plain PIL,
from clipsweep's shards, WebDataset tars and img2dataset Parquet holding the same images.

    python benchmarks/data_throughput.py [--n 10000] [--num-cpus 2] [--epochs 3]

Prints one table. The plain loop is the same work (Parquet read, decode, random resized crop,
tokenize, normalise to torch) in one process with no Ray; the ratio is what Ray Data's
parallelism buys (or costs) on this machine. Epoch 1 of Ray Data includes starting its workers.
The WebDataset and img2dataset rows read the same image bytes (`trainers/data/exports.py`
wrote them from the shards), so their ratio to the shards' row is the cost of the layout.
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

from clipsweep.trainers.data import exports
from clipsweep.trainers.data.loading import Preprocess, build_dataset, to_torch, torch_batches
from clipsweep.trainers.data.shards import resolve_shards
from clipsweep.trainers.data.sources import resolve_source
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
        rows = [("generate synthetic scenes (64 px, PNG, 1 process)", "scenes/s", n / seconds, None, None)]
        corpus = generate_synthetic(os.path.join(out, "c"), n=args.n, seed=0)
        files = resolve_shards(corpus.split_dir("train"))
        preprocess = Preprocess(corpus.tokenizer_dir, image_size=64, train=True)

        plain = [timed(lambda: plain_epoch(files, preprocess)) for _ in range(args.epochs)]
        plain_rate = np.median([i / s for i, s in plain])
        rows.append(("plain PIL loop, 1 process (median epoch)", "images/s", plain_rate, 1.0, None))

        samples = list(exports.shard_samples(files))
        sources = {
            "clipsweep shards": corpus.split_dir("train"),
            "WebDataset tars": exports.write_webdataset(samples, os.path.join(out, "wds"), len(files), "png"),
            "img2dataset Parquet": os.path.dirname(exports.write_img2dataset_parquet(samples, os.path.join(out, "i2d"), len(files))[0]),
        }
        ray.init(num_cpus=args.num_cpus, configure_logging=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        own = None
        for name, where in sources.items():
            dataset = build_dataset(resolve_source(where), preprocess)
            epochs = [timed(lambda d=dataset: sum(len(b["id"]) for b in torch_batches(d, BATCH))) for _ in range(args.epochs)]
            rates = [i / s for i, s in epochs]
            warm = float(np.median(rates[1:] or rates))
            own = own or warm
            rows.append((f"{name}: Ray Data, {args.num_cpus} CPUs, epoch 1 (cold start)", "images/s", rates[0], rates[0] / plain_rate, None))
            rows.append((f"{name}: Ray Data, {args.num_cpus} CPUs (median warm epoch)", "images/s", warm, warm / plain_rate, warm / own))
        ray.shutdown()

    table = Table(title=f"data throughput: {args.n} scenes, {len(files)} train shards, {platform.node()} ({os.cpu_count()} cores)")
    for column in ("what", "unit", "rate", "vs plain", "vs own shards"):
        table.add_column(column, justify="left" if column in ("what", "unit") else "right")
    for what, unit, rate, ratio, versus in rows:
        table.add_row(what, unit, f"{rate:,.0f}", "" if ratio is None else f"{ratio:.2f}x", "" if versus is None else f"{versus:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
