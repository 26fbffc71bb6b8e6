"""GPU path check: CUDA training steps (fp32 and bf16 autocast), NCCL with one GPU, loss costs.

    python benchmarks/gpu_check.py

Needs a CUDA device; CI never runs it. Prints three tables: the dual encoder's training steps
on a fixed batch (loss must fall, logit scale must stay clamped), a differentiable NCCL
all-gather in a one-process group, and each objective's forward+backward time and peak memory
vs open_clip's ClipLoss at W = 1 on the GPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from rich.console import Console
from rich.table import Table

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.models.dual_encoder import MAX_LOGIT_SCALE, DualEncoder
from clipsweep.trainers.objectives import ContrastiveObjective, ObjectiveInputs, WorkerGroup

sys.path.insert(0, os.path.dirname(__file__))
from loss_bench import OBJECTIVES, _step_fn  # noqa: E402

DEVICE = torch.device("cuda", 0)


def train_steps(amp: bool, steps: int = 30, batch: int = 256) -> tuple[float, float, float, float]:
    """(first loss, last loss, ms/step, final logit scale) overfitting one batch."""
    torch.manual_seed(0)
    cfg = TrialConfig.from_dict({"model": {"image_tower": "resnet18", "text_tower": "tiny_bert"}})
    model = DualEncoder(cfg.model, cfg.objective).to(DEVICE)
    objective = ContrastiveObjective(cfg, cfg.model.embed_dim, group=WorkerGroup.current())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch, 3, 64, 64, device=DEVICE)
    ids = torch.randint(5, 2000, (batch, 32), device=DEVICE)
    mask = torch.ones_like(ids)
    losses, times = [], []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            u, v = model(images, ids, mask)
        # The loss runs in fp32: softmax over B_global logits at bf16 loses the small terms.
        loss = objective(ObjectiveInputs(u.float(), v.float()), model.logit_scale, {"clip": 1.0})["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.clamp_logit_scale()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    return losses[0], losses[-1], 1000 * statistics.median(times[3:]), model.logit_scale.item()


def nccl_gather_check() -> float:
    """Max error of d(sum of gathered * w)/dx against w, through NCCL in a 1-process group."""
    x = torch.randn(8, 16, device=DEVICE, requires_grad=True)
    gathered = torch.cat(dist_fn.all_gather(x))
    weight = torch.randn_like(gathered)
    (gathered * weight).sum().backward()
    return (x.grad - weight).abs().max().item()


def loss_costs(batches=(256, 1024, 4096), dim=256, steps=20) -> list[tuple]:
    rows = []
    for b in batches:
        reference = None
        for name in OBJECTIVES:
            step = _step_fn(name, b, dim, WorkerGroup(), DEVICE)
            step()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                step()
                torch.cuda.synchronize()
                times.append(1000 * (time.perf_counter() - start))
            ms, mb = statistics.median(times), torch.cuda.max_memory_allocated() / 2**20
            reference = reference or (ms, mb)
            rows.append((b, name, ms, ms / reference[0], mb, mb / reference[1]))
    return rows


def main() -> None:
    console = Console(width=140)
    console.print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  CUDA {torch.version.cuda}")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29511")
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=DEVICE)

    table = Table(title="dual encoder (resnet18 + tiny_bert), 30 AdamW steps on one batch of 256, 64 px")
    for column in ("precision", "first loss", "last loss", "ms/step", "logit scale (<= ln 100)"):
        table.add_column(column, justify="right")
    for amp in (False, True):
        first, last, ms, scale = train_steps(amp)
        assert last < first and scale <= MAX_LOGIT_SCALE + 1e-6, (first, last, scale)
        table.add_row("bf16 autocast" if amp else "fp32", f"{first:.3f}", f"{last:.3f}", f"{ms:.1f}", f"{scale:.3f}")
    console.print(table)
    console.print(f"NCCL differentiable all-gather, 1 GPU: max gradient error {nccl_gather_check():.2e}")
    dist.destroy_process_group()

    costs = Table(title="loss forward+backward on the GPU, W=1, d=256, median of 20 steps")
    for column in ("B", "objective", "ms/step", "vs open_clip", "peak MB", "mem vs open_clip"):
        costs.add_column(column, justify="left" if column == "objective" else "right")
    for b, name, ms, ratio, mb, mem in loss_costs():
        costs.add_row(str(b), name, f"{ms:.2f}", f"{ratio:.2f}x", f"{mb:.0f}", f"{mem:.2f}x")
    console.print(costs)


if __name__ == "__main__":
    main()
