"""Loss cost per objective: forward+backward time and peak memory vs open_clip's ClipLoss.

    python benchmarks/loss_bench.py [--batches 256 1024 4096] [--dim 256] [--workers 1 2] [--device cpu|cuda]

Every (objective, B_global, W) runs in fresh processes (W of them, gloo or nccl), on the same
random embeddings, so peak memory is that process's own: CUDA's max_memory_allocated on a GPU,
the growth of peak RSS on the CPU. Time is the median of timed steps on the slowest rank.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import socket
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.objectives import ContrastiveObjective, ObjectiveInputs, WorkerGroup
from clipsweep.trainers.objectives.clusters import Clustering

OBJECTIVES: dict[str, dict] = {
    "open_clip ClipLoss": {},
    "vanilla": {},
    "sine": {"objective": {"logit_transform": "sine"}},
    "sigmoid_centered": {"objective": {"logit_transform": "sigmoid_centered"}},
    "cluster_weight": {"negatives": {"weighting": "cluster_weight"}},
    "cluster_mask": {"negatives": {"weighting": "cluster_mask"}},
    "cluster_both": {"negatives": {"weighting": "cluster_both"}},
    "unimodal (II+TT)": {"unimodal": {"image_weight": 1.0, "text_weight": 1.0}},
}
CLUSTERS = 50


def _step_fn(name: str, b_local: int, dim: int, group: WorkerGroup, device: torch.device):
    g = torch.Generator().manual_seed(group.rank)
    make = lambda: F.normalize(torch.randn(b_local, dim, generator=g), dim=-1).to(device).requires_grad_(True)  # noqa: E731
    u, v, u2, v2 = make(), make(), make(), make()
    scale = torch.tensor(math.log(1 / 0.07), device=device, requires_grad=True)
    if name == "open_clip ClipLoss":
        from open_clip.loss import ClipLoss

        loss = ClipLoss(local_loss=True, gather_with_grad=True, rank=group.rank, world_size=group.world_size)
        return lambda: loss(u, v, scale.exp()).backward()
    cfg = TrialConfig.from_dict(OBJECTIVES[name])
    objective = ContrastiveObjective(cfg, dim, group=group).to(device)
    centres = F.normalize(torch.randn(CLUSTERS, dim, generator=g), dim=-1)
    cosine = (centres @ centres.T).numpy()
    objective.set_clusters(Clustering(torch.zeros(0).numpy(), cosine), Clustering(torch.zeros(0).numpy(), cosine))
    clusters = torch.randint(0, CLUSTERS, (b_local,), generator=g).to(device)
    weights = {"clip": 1.0, "image_image": cfg.unimodal.image_weight, "text_text": cfg.unimodal.text_weight}
    inputs = ObjectiveInputs(u, v, image_view=u2, text_view=v2, image_cluster=clusters, text_cluster=clusters)
    return lambda: objective(inputs, scale, weights)["total"].backward()


def _worker(rank: int, world: int, port: int, name: str, b_global: int, dim: int, device: str, steps: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dev = torch.device(device if device == "cpu" else f"cuda:{rank}")
    if world > 1:
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world)
    group = WorkerGroup.current()
    step = _step_fn(name, b_global // world, dim, group, dev)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    step()  # warm-up
    times = []
    for _ in range(steps):
        sync()
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    torch.save({"ms": 1000 * statistics.median(times), "mb": peak_mb}, os.path.join(out, f"{rank}.pt"))
    if world > 1:
        dist.destroy_process_group()


def measure(name: str, b_global: int, dim: int, world: int, device: str, steps: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        mp.spawn(_worker, args=(world, port, name, b_global, dim, device, steps, out), nprocs=world, join=True)
        results = [torch.load(os.path.join(out, f"{r}.pt")) for r in range(world)]
    return max(r["ms"] for r in results), max(r["mb"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)  # 5 steps left small-B ratios at +-40% noise
    args = parser.parse_args()
    table = Table(title=f"loss forward+backward, d={args.dim}, {args.device}, median of {args.steps} steps, slowest rank")
    for column in ("W", "B_global", "objective", "ms/step", "vs open_clip", "peak MB/rank", "mem vs open_clip"):
        table.add_column(column, justify="left" if column == "objective" else "right")
    for world in args.workers:
        if args.device == "cuda" and world > torch.cuda.device_count():
            continue  # NCCL needs one GPU per rank
        for b in args.batches:
            reference = None
            for name in OBJECTIVES:
                ms, mb = measure(name, b, args.dim, world, args.device, args.steps)
                reference = reference or (ms, mb)
                table.add_row(
                    str(world), str(b), name, f"{ms:.2f}", f"{ms / reference[0]:.2f}x", f"{mb:.0f}",
                    f"{mb / reference[1]:.2f}x" if reference[1] > 0 else "",
                )  # fmt: skip
            table.add_section()
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
