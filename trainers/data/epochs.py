"""A worker's decoded training batches, epoch by epoch, in an order drawn from the trial's seed.

Two sources, as `loading.build_train_dataset` decides:
- `InMemoryTrainingSet`: every worker holds the whole decoded set, in id order. Each epoch one
  permutation is drawn from (seed, epoch), the same on every rank, and rank r takes every
  world-th item from position r: a global shuffle per epoch, as torch's `DistributedSampler`
  with `set_epoch` gives, and independent of the order in which Ray Data produced the blocks.
- `StreamingTrainingShard`: this rank's Ray Data shard, shuffled through Ray Data's local
  buffer with a seed drawn from (seed, epoch, rank). The stream runs with `preserve_order`
  (the read too, `loading.read_shards`), so at W=1 its order is the files' order every run; at
  W >= 2 Ray Train's `streaming_split` hands blocks to whichever rank asks first, so a rank's
  items vary between runs (docs/train.md).
Both yield decoded numpy batches (`Preprocess.decode` columns); the loop augments them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import ray.data

from .. import seeding

Batch = dict[str, np.ndarray]


class TrainingSource(Protocol):
    def epoch(self, epoch: int, seed: int, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        """This rank's full batches of one epoch (ranks step in lockstep, so no partial batch)."""
        ...

    def every_item(self, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        """This rank's part of the set in a fixed order, for embedding passes (k-means, mining)."""
        ...


class InMemoryTrainingSet:
    """The whole decoded training set in this worker's memory (see the module docstring)."""

    def __init__(self, data: ray.data.DataIterator | ray.data.Dataset, read_batch: int = 4096) -> None:
        batches = list(data.iter_batches(batch_size=read_batch, batch_format="numpy"))
        columns = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
        order = np.argsort(columns["id"], kind="stable")
        self.columns = {key: value[order] for key, value in columns.items()}

    def __len__(self) -> int:
        return len(self.columns["id"])

    def _rows(self, rows: np.ndarray) -> Batch:
        return {key: value[rows] for key, value in self.columns.items()}

    def epoch(self, epoch: int, seed: int, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        order = seeding.rng(seed, seeding.ORDER, epoch).permutation(len(self))
        mine = order[rank::world][: len(self) // world]  # equal slices: every rank takes the same steps
        for start in range(0, len(mine) - batch_size + 1, batch_size):
            yield self._rows(mine[start : start + batch_size])

    def every_item(self, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        mine = np.arange(rank, len(self), world)
        for start in range(0, len(mine), batch_size):
            yield self._rows(mine[start : start + batch_size])


class StreamingTrainingShard:
    """This rank's Ray Data shard, shuffled per epoch through a seeded local buffer."""

    def __init__(self, shard: ray.data.DataIterator, buffer_rows: int = 8192) -> None:
        self.shard = shard
        self.buffer_rows = buffer_rows

    def epoch(self, epoch: int, seed: int, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        return self.shard.iter_batches(
            batch_size=batch_size,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=self.buffer_rows,
            local_shuffle_seed=int(seeding.rng(seed, seeding.ORDER, epoch, rank).integers(2**31)),
        )

    def every_item(self, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        return self.shard.iter_batches(batch_size=batch_size, batch_format="numpy")
