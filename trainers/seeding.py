"""Where a trial's random numbers come from: `optim.seed`, plus the epoch and rank.

Every random draw of a trial (initial weights, the order of the training set, crops, caption
draws, paper C's views and token drop, hard-batch grouping, dropout) comes from a stream
named here and keyed by (seed, stream, epoch, rank). Keying by epoch, not by how many numbers
were drawn before, is what lets a run resumed from epoch k's checkpoint draw epoch k+1 exactly
as an uninterrupted run does; keying by rank gives each worker its own crops.
"""

from __future__ import annotations

import os

import numpy as np
import torch

# Stream ids: fixed numbers, so that adding a stream never shifts another one's draws.
ORDER = 1  # the per-epoch permutation of the training set (the same on every rank)
AUGMENT = 2  # crops, flips, colour jitter, caption draws, token drop (per rank)
TORCH = 3  # torch's global generator during the epoch: dropout (per rank)
HARD_BATCHES = 4  # paper C's regrouping of batches by cluster (per rank)


def rng(seed: int, stream: int, epoch: int = 0, rank: int = 0, salt: int = 0) -> np.random.Generator:
    """A numpy generator of one stream, independent of every other (seed, stream, epoch, rank);
    a non-zero `salt` gives the stream other draws (0 keeps the unsalted key, and its numbers)."""
    return np.random.default_rng([seed, stream, epoch, rank] + ([salt] if salt else []))


def torch_generator(source: np.random.Generator) -> torch.Generator:
    """A torch CPU generator seeded from a numpy stream (for torch ops that take one)."""
    return torch.Generator().manual_seed(int(source.integers(2**63)))


def seed_torch_epoch(seed: int, epoch: int, rank: int) -> None:
    """Re-seeds torch's global generator for an epoch, so dropout continues after a resume."""
    torch.manual_seed(int(rng(seed, TORCH, epoch, rank).integers(2**63)))


def make_deterministic(on: bool = True) -> None:
    """`optim.deterministic`: torch's deterministic kernels only (an error where none exists).

    On CUDA this also needs cuBLAS's fixed workspace (set before its first call) and cuDNN's
    autotuner off; on the CPU clipsweep's runs are already repeatable without it. `on=False`
    restores torch's defaults (a process that runs trial after trial keeps these flags).
    """
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on)
