"""Global negatives: gather each worker's embeddings so every loss sees the global batch.

Each worker keeps its own rows (B_local) and scores them against all B_global columns, as
open_clip's `ClipLoss(local_loss=True, gather_with_grad=True)`: memory O(B_local x B_global).
The all-gather is differentiable, so a worker's embeddings also get the gradient of the other
workers' losses through their columns; with DDP's gradient averaging the update equals the
single-process update on the same global batch. With one process there is no collective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


@dataclass(frozen=True)
class WorkerGroup:
    """Rank and world size, read once; W = 1 needs no process group."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> WorkerGroup:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(B_local, ...) -> (B_global, ...) in rank order; gradient flows back to every rank."""
        if self.world_size == 1:
            return x
        return torch.cat(dist_fn.all_gather(x), dim=0)

    def gather_constant(self, x: torch.Tensor) -> torch.Tensor:
        """As `gather`, for tensors without gradient (cluster ids, labels, frozen embeddings)."""
        if self.world_size == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    def targets(self, local_size: int, device: torch.device) -> torch.Tensor:
        """Column index of each local row's positive: labels offset by rank * B_local."""
        return torch.arange(local_size, device=device) + self.rank * local_size
