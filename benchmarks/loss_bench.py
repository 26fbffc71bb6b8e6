"""Loss cost per objective: forward+backward time and peak memory vs open_clip's ClipLoss.

    python benchmarks/loss_bench.py [--batches 256 1024 4096] [--dim 256] [--workers 1 2] [--device cpu|cuda]

Every (objective, B_global, W) runs in fresh processes (W of them, gloo or nccl). Peak memory is
the objective's own first step in that process: CUDA's max_memory_allocated on a GPU, the growth
of peak RSS on the CPU. Time is interleaved: the objective and open_clip's ClipLoss alternate step
by step on the same embeddings (in alternating order), so a machine that slows down slows both;
the ratio column is the median of the per-step ratios (slowest rank each), with their 10th-90th
percentiles, and does not drift with the load the way separately timed blocks did (vanilla at
B=4096 measured 0.98x on an idle machine and 2.24x on a loaded one that way).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import socket
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.objectives import ContrastiveObjective, ObjectiveInputs, WorkerGroup, full_weights
from clipsweep.trainers.objectives.clusters import Clustering

REFERENCE = "open_clip ClipLoss"
OBJECTIVES: dict[str, dict] = {
    REFERENCE: {},
    "vanilla": {},
    "sine": {"objective": {"logit_transform": "sine"}},
    "sigmoid_centered": {"objective": {"logit_transform": "sigmoid_centered"}},
    "cluster_weight": {"negatives": {"weighting": "cluster_weight"}},
    "cluster_mask": {"negatives": {"weighting": "cluster_mask"}},
    "cluster_both": {"negatives": {"weighting": "cluster_both"}},
    "unimodal (II+TT)": {"unimodal": {"image_weight": 1.0, "text_weight": 1.0}},
}
CLUSTERS = 50


def _inputs(b_local: int, dim: int, rank: int, device: torch.device) -> list[torch.Tensor]:
    """The rank's embeddings (image, text and their second views) and the log logit scale."""
    g = torch.Generator().manual_seed(rank)
    views = [F.normalize(torch.randn(b_local, dim, generator=g), dim=-1).to(device).requires_grad_(True) for _ in range(4)]
    return views + [torch.tensor(math.log(1 / 0.07), device=device, requires_grad=True)]


def _step_fn(name: str, tensors: list[torch.Tensor], group: WorkerGroup, device: torch.device):
    """One forward+backward of objective `name` on `tensors`."""
    u, v, u2, v2, scale = tensors
    if name == REFERENCE:
        from open_clip.loss import ClipLoss

        loss = ClipLoss(local_loss=True, gather_with_grad=True, rank=group.rank, world_size=group.world_size)
        return lambda: loss(u, v, scale.exp()).backward()
    cfg = TrialConfig.from_dict(OBJECTIVES[name])
    objective = ContrastiveObjective(cfg, u.shape[1], group=group).to(device)
    g = torch.Generator().manual_seed(100 + group.rank)
    centres = F.normalize(torch.randn(CLUSTERS, u.shape[1], generator=g), dim=-1)
    cosine = (centres @ centres.T).numpy()
    objective.set_clusters(Clustering(torch.zeros(0).numpy(), cosine), Clustering(torch.zeros(0).numpy(), cosine))
    clusters = torch.randint(0, CLUSTERS, (u.shape[0],), generator=g).to(device)
    weights = full_weights(cfg)
    inputs = ObjectiveInputs(u, v, image_view=u2, text_view=v2, image_cluster=clusters, text_cluster=clusters)
    return lambda: objective(inputs, scale, weights)["total"].backward()


def _peak_mb(device: str, dev: torch.device, base_rss: int) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024


def _worker(rank: int, world: int, port: int, name: str, b_global: int, dim: int, device: str, steps: int, out: str):
    """Peak memory of `name` alone (its first step, in a fresh process), then `steps` timed
    pairs of it and open_clip's ClipLoss on the same tensors, in alternating order."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dev = torch.device(device if device == "cpu" else f"cuda:{rank}")
    if world > 1:
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world)
    group = WorkerGroup.current()
    tensors = _inputs(b_global // world, dim, rank, dev)
    step, reference = _step_fn(name, tensors, group, dev), _step_fn(REFERENCE, tensors, group, dev)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    step()  # warm-up, and the peak memory of this objective alone
    peak_mb = _peak_mb(device, dev, base_rss)
    reference()

    def timed(fn) -> float:
        sync()
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"objective": [], "reference": []}
    for k in range(steps):
        order = (("objective", step), ("reference", reference)) if k % 2 else (("reference", reference), ("objective", step))
        for key, fn in order:
            times[key].append(timed(fn))
    torch.save({"times": times, "mb": peak_mb}, os.path.join(out, f"{rank}.pt"))
    if world > 1:
        dist.destroy_process_group()


@dataclass(frozen=True)
class Measured:
    ms: float  # median step time of the objective, slowest rank
    ratio: float  # median over steps of objective / open_clip, each on the slowest rank
    low: float  # 10th and 90th percentiles of those ratios
    high: float
    mb: float  # peak memory per rank of the objective alone


def measure(name: str, b_global: int, dim: int, world: int, device: str, steps: int) -> Measured:
    with tempfile.TemporaryDirectory() as out, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        mp.spawn(_worker, args=(world, port, name, b_global, dim, device, steps, out), nprocs=world, join=True)
        results = [torch.load(os.path.join(out, f"{r}.pt")) for r in range(world)]
    slowest = {key: np.max([r["times"][key] for r in results], axis=0) for key in ("objective", "reference")}
    ratios = slowest["objective"] / slowest["reference"]
    low, high = np.percentile(ratios, [10, 90])
    return Measured(1000 * float(np.median(slowest["objective"])), float(np.median(ratios)), low, high, max(r["mb"] for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)  # 5 steps left small-B ratios at +-40% noise
    args = parser.parse_args()
    table = Table(
        title=f"loss forward+backward, d={args.dim}, {args.device}, {args.steps} interleaved steps each with open_clip's ClipLoss"
    )
    for column in ("W", "B_global", "objective", "ms/step", "vs open_clip (median)", "p10-p90", "peak MB/rank", "mem vs open_clip"):
        table.add_column(column, justify="left" if column == "objective" else "right")
    for world in args.workers:
        if args.device == "cuda" and world > torch.cuda.device_count():
            continue  # NCCL needs one GPU per rank
        for b in args.batches:
            reference_mb = None
            for name in OBJECTIVES:
                m = measure(name, b, args.dim, world, args.device, args.steps)
                reference_mb = reference_mb if reference_mb is not None else m.mb
                table.add_row(
                    str(world), str(b), name, f"{m.ms:.2f}", f"{m.ratio:.2f}x", f"{m.low:.2f}-{m.high:.2f}", f"{m.mb:.0f}",
                    f"{m.mb / reference_mb:.2f}x" if reference_mb > 0 else "",
                )  # fmt: skip
            table.add_section()
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
