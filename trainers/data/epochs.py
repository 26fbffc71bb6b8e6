"""A worker's decoded training batches, epoch by epoch, in an order drawn from the trial's seed.

Two sources, as `loading.streams` decides:
- `InMemoryTrainingSet`: every worker holds the whole decoded set, in id order. Each epoch one
  permutation is drawn from (seed, epoch), the same on every rank, and rank r takes every
  world-th item from position r: a global shuffle per epoch, as torch's `DistributedSampler`
  with `set_epoch` gives, and independent of the order in which Ray Data produced the blocks.
- `StreamingTrainingShard`: this rank's stream of its own shard files (`loading.rank_stream`:
  every world-th file), read with `preserve_order`, so in the files' order every run, and
  shuffled through Ray Data's local buffer with a seed drawn from (seed, epoch, rank). A
  rank's items and their order are the same every run, at any W.
Both yield decoded numpy batches (`Preprocess.decode` columns); the loop augments them. Rows
marked `skip` (a sample without caption or image, an image that does not decode, a truncated
or unreadable shard: `sources.py`) never reach a batch; each source counts them for its epoch
(`counts`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
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

    def counts(self) -> Counter[str]:
        """Rows of the last epoch: "read", and one count per skip reason. In memory they are the
        whole set's (every rank holds it); streamed, this rank's."""
        ...


def drop_skipped(batch: Batch, counts: Counter[str]) -> Batch:
    """`batch` without its skipped rows, which `counts` tallies by reason (with every row as "read")."""
    counts["read"] += len(batch["id"])
    skip = batch.get("skip")
    if skip is None:
        return batch
    bad = skip != ""
    if not bad.any():
        return batch
    counts.update(skip[bad].tolist())
    return {key: value[~bad] for key, value in batch.items()}


def full_batches(batches: Iterable[Batch], batch_size: int, counts: Counter[str]) -> Iterator[Batch]:
    """The good rows of `batches`, regrouped into batches of exactly `batch_size` (the remainder
    is dropped, as `drop_last` would)."""
    pending: list[Batch] = []
    held = 0
    for batch in batches:
        good = drop_skipped(batch, counts)
        pending.append(good)
        held += len(good["id"])
        while held >= batch_size:
            merged = {key: np.concatenate([b[key] for b in pending]) for key in pending[0]}
            yield {key: value[:batch_size] for key, value in merged.items()}
            pending, held = [{key: value[batch_size:] for key, value in merged.items()}], held - batch_size


class InMemoryTrainingSet:
    """The whole decoded training set in this worker's memory (see the module docstring)."""

    def __init__(self, data: ray.data.DataIterator | ray.data.Dataset, read_batch: int = 4096) -> None:
        self._counts: Counter[str] = Counter()
        batches = [drop_skipped(b, self._counts) for b in data.iter_batches(batch_size=read_batch, batch_format="numpy")]
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

    def counts(self) -> Counter[str]:
        return Counter(self._counts)


class StreamingTrainingShard:
    """This rank's stream, shuffled per epoch through a seeded local buffer."""

    def __init__(self, shard: ray.data.Dataset | ray.data.DataIterator, buffer_rows: int = 8192) -> None:
        self.shard = shard
        self.buffer_rows = buffer_rows
        self._counts: Counter[str] = Counter()

    def epoch(self, epoch: int, seed: int, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        self._counts = Counter()
        batches = self.shard.iter_batches(
            batch_size=batch_size,
            batch_format="numpy",
            local_shuffle_buffer_size=self.buffer_rows,
            local_shuffle_seed=int(seeding.rng(seed, seeding.ORDER, epoch, rank).integers(2**31)),
        )
        return full_batches(batches, batch_size, self._counts)

    def every_item(self, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        counts: Counter[str] = Counter()  # an embedding pass: its skips were counted by the epoch
        return (drop_skipped(b, counts) for b in self.shard.iter_batches(batch_size=batch_size, batch_format="numpy"))

    def counts(self) -> Counter[str]:
        return Counter(self._counts)
