"""Where a trial's loop runs: a Ray Train worker, or the Tune trial's own actor (one worker).

The loop (`train_loop.run_loop`) asks its session for its rank, device and data, and hands it
each epoch's report. `RayTrainSession` is Ray Train's worker context. `TrialActorSession` runs a
one-worker trial in the process that Tune already started for it, skipping the Train
controller, its placement group and a second process that imports torch (about 12 s of each
trial's start-up on 2 cores, `benchmarks/trial_startup.py`). It writes checkpoints where Ray
Train would (`<storage>/<name>/checkpoint_*`, metrics last), so resuming, the tracker and the
finalists read both layouts alike.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, Protocol

import pyarrow.fs
import ray
import ray.data
import ray.train
import ray.train.torch
import torch

from .checkpoint import METRICS_FILE, save_checkpoint
from .report_keys import CHECKPOINT_PATH_KEY
from .retention import SCORE_METRIC, KeepPolicy, kept_epochs


class Session(Protocol):
    """What the train loop needs from the process it runs in."""

    rank: int
    world: int
    device: torch.device

    def training_set(self) -> ray.data.DataIterator | ray.data.Dataset:
        """The decoded training set held in memory (a streamed one each rank reads itself)."""

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        """Reports an epoch; `state` (rank 0's, when it is a new one) is saved as its checkpoint."""

    def checkpoint(self) -> ray.train.Checkpoint | None:
        """The latest checkpoint of this run, if it ran before (a restart or a resumed sweep)."""


class RayTrainSession:
    """A Ray Train worker's context."""

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def training_set(self) -> ray.data.DataIterator:
        return ray.train.get_dataset_shard("train")

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(directory, state, metrics)  # a checkpoint says what it scored
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))

    def checkpoint(self) -> ray.train.Checkpoint | None:
        return ray.train.get_checkpoint()


class TrialActorSession:
    """One worker inside the Tune trial's actor: rank 0 of 1, checkpoints in `run_dir`.

    Args:
        dataset: the decoded training set held in memory; None when it streams.
        run_dir: the run's folder, local or any pyarrow URI (`<storage>/<trial name>`).
        forward: receives each report, with its checkpoint's path, e.g. to pass it to Tune.
        threads: torch's intra-op threads (a Train worker gets its CPUs' worth from Ray).
        keep: which checkpoints stay once a new one is stored (`retention.kept_epochs`).
    """

    rank, world = 0, 1

    def __init__(
        self,
        dataset: ray.data.Dataset | None,
        run_dir: str,
        forward: Callable[[dict[str, Any]], None],
        threads: int,
        keep: KeepPolicy = "all",
    ) -> None:
        self.dataset = dataset
        self.fs, self.root = pyarrow.fs.FileSystem.from_uri(run_dir)
        self.run_dir = run_dir.rstrip("/")
        self.forward = forward
        self.keep = keep
        self.device = torch.device("cuda", 0) if ray.get_gpu_ids() else torch.device("cpu")
        torch.set_num_threads(threads)

    def training_set(self) -> ray.data.Dataset:
        assert self.dataset is not None, "a streamed training set is read by the loop (loading.rank_stream)"
        return self.dataset

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            self.forward(metrics)
            return
        folder = f"checkpoint_{metrics['epoch']:06d}"
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(directory, state, metrics)
            self.fs.create_dir(f"{self.root}/{folder}")
            # The metrics go last: a folder without them is an interrupted upload, never resumed from.
            for name in sorted(os.listdir(directory), key=lambda n: n == METRICS_FILE):
                pyarrow.fs.copy_files(os.path.join(directory, name), f"{self.root}/{folder}/{name}",
                                      destination_filesystem=self.fs)  # fmt: skip
        self.forward({**metrics, CHECKPOINT_PATH_KEY: f"{self.run_dir}/{folder}"})
        # The sweep's tracker picks the best of the same reports by the same rule, so the
        # checkpoint it names stays.
        stored = self._stored()
        kept = kept_epochs({epoch: m.get(SCORE_METRIC) for epoch, (_, m) in stored.items()}, self.keep)
        for epoch, (path, _) in stored.items():
            if epoch not in kept:
                self.fs.delete_dir(path)

    def checkpoint(self) -> ray.train.Checkpoint | None:
        stored = self._stored()
        if not stored:
            return None
        folder = stored[max(stored)][0].removeprefix(self.root).lstrip("/")
        return ray.train.Checkpoint(f"{self.run_dir}/{folder}")

    def _stored(self) -> dict[int, tuple[str, dict[str, Any]]]:
        """The complete checkpoints under the run folder: {epoch: (its folder, its metrics)}."""
        found = self.fs.get_file_info(pyarrow.fs.FileSelector(self.root, allow_not_found=True, recursive=True))
        stored = {}
        for info in found:
            if info.base_name == METRICS_FILE:
                with self.fs.open_input_stream(info.path) as f:
                    metrics = json.loads(f.read())
                stored[metrics["epoch"]] = (info.path.rsplit("/", 1)[0], metrics)
        return stored
