"""What each worker runs for one trial: the stage plan, epoch by epoch.

It runs in a Ray Train worker, or for one worker in the Tune trial's own actor; `session`
says which (rank, device, data, reports, checkpoints). Workers step in lockstep: a set held in
memory gives every rank an equal slice; streamed, each rank reads its own files and the ranks
stop together at the first step one cannot fill, so all-gathers line up.
Gradients are averaged across ranks with one flat all-reduce per step (DDP would need
re-wrapping at every stage change, since stages freeze different parameters).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import ray.train
import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from . import seeding, startup
from .checkpoint import load_checkpoint, load_metrics
from .config import TrialConfig
from .data.epochs import InMemoryTrainingSet, StreamingTrainingShard, TrainingSource
from .data.loading import Preprocess, rank_stream, to_torch
from .data.sources import SKIP_REASONS, Source, check_skipped
from .evaluation.settings import SuiteSettings
from .evaluation.suite import LoadedSuite, flatten
from .mining import TrainingSetMining
from .models.dual_encoder import DualEncoder
from .objectives import TERMS, ContrastiveObjective, ObjectiveInputs, WorkerGroup
from .report_keys import CHECKPOINT_PATH_KEY, NODE_KEY
from .schedules import Stage, param_groups, reclustering, stage_plan
from .session import RayTrainSession, Session


@dataclass(frozen=True)
class LoopSettings:
    """What the driver tells every worker besides the trial config (a plain dict over Ray)."""

    trial: dict[str, Any]
    train: str  # training shards (read directly only to mine paper D's pseudo-captions)
    n_train: int  # training items (equal split: each rank sees n_train // world of them)
    n_classes: int  # labels in the training data, 0 when it has none
    tokenizer_dir: str
    suite: dict[str, Any] | None = None  # `SuiteSettings` scored every epoch; None: no benchmark
    eval_tier: str = "cheap"
    augment: dict[str, Any] | None = None  # `Preprocess` fields: the workers augment each decoded batch
    in_memory: bool = True  # each worker holds the whole decoded set (else it streams its shard)
    max_skipped_fraction: float = 0.01  # `data.max_skipped_fraction`: more skipped samples in an epoch fail the trial
    stream_source: dict[str, Any] | None = None  # streamed: the `sources.Source` each rank reads its files of
    resume_from: str | None = None  # checkpoint directory to continue from

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopSettings:
        return cls(**data)



def average_gradients(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Mean of each gradient over ranks, as one flat all-reduce."""
    grads = [p.grad for p in params if p.grad is not None]
    if world_size == 1 or not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size
    for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(synced)


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base rate, then cosine decay to 0 at `total` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trial(TrainingSetMining):
    """One worker's model, objective, data shard and progress (its training-set mining: `mining.py`)."""

    def __init__(self, settings: LoopSettings, session: Session) -> None:
        self.settings, self.session = settings, session
        self.cfg = TrialConfig.from_dict(settings.trial)
        self.rank, self.world, self.device = session.rank, session.world, session.device
        # Mixed precision only where it pays (CUDA); fp16 needs loss scaling, bf16 does not.
        precision = self.cfg.optim.precision_on(self.device.type)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.autocast = torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        seeding.make_deterministic(self.cfg.optim.deterministic)  # set either way: a reused process keeps the last trial's
        torch.manual_seed(self.cfg.optim.seed)  # same initial weights on every rank
        self.model = DualEncoder(self.cfg.model, self.cfg.objective).to(self.device)
        self.objective = ContrastiveObjective(
            self.cfg, self.cfg.model.embed_dim, settings.n_classes or None, WorkerGroup.current()
        ).to(self.device)
        startup.mark("model_built")
        self.modules: dict[str, torch.nn.Module] = {"": self.model, **self.objective.proxies}
        self.data: TrainingSource
        if settings.in_memory:
            self.data = InMemoryTrainingSet(session.training_set())
        else:
            source = Source(**{**settings.stream_source, "files": tuple(settings.stream_source["files"])})
            self.data = StreamingTrainingShard(rank_stream(source, Preprocess(**settings.augment), self.rank, self.world))
        startup.mark("data_ready")
        self.augment = Preprocess(**settings.augment)
        self.centre = dataclasses.replace(self.augment, train=False, views=False)  # embedding passes: no draw
        self.local_batch = self.cfg.optim.batch_size // self.world
        # In memory the skipped samples are known (and refused above the limit) before the first
        # step; streamed, the count of a source's samples bounds the steps.
        kept = len(self.data) if isinstance(self.data, InMemoryTrainingSet) else settings.n_train
        if isinstance(self.data, InMemoryTrainingSet):
            check_skipped(self.data.counts(), settings.max_skipped_fraction, "the training set")
        self.steps_per_epoch = (kept // self.world) // self.local_batch
        self.lockstep = self.world > 1 and not settings.in_memory  # ranks' shards lose different rows
        self.assignments: dict[str, tuple[int, int]] = {}
        self.batch_clusters: dict[str, int] = {}  # paper C's hard batching: id -> cluster of [u; v]
        self.suite: LoadedSuite | None = None
        if self.rank == 0 and settings.suite:
            self.suite = LoadedSuite(SuiteSettings.from_dict(settings.suite), settings.eval_tier, self.cfg.model.image_size)
        startup.mark("suite_loaded")

    # ---- one epoch -----------------------------------------------------------------------

    def _inputs(self, batch: dict[str, Any], stage: Stage) -> ObjectiveInputs:
        with self.autocast:
            u, v = self.model(batch["image"], batch["input_ids"], batch["attention_mask"])
            inputs = ObjectiveInputs(u.float(), v.float(), labels=batch["label"])
            needed = {field_name for name in stage.weights for field_name in TERMS[name].needs}
            if "image_view" in needed:
                inputs.image_view = self.model.encode_image(batch["image_view"]).float()
            if "text_view" in needed:
                inputs.text_view = self.model.encode_text(batch["view_input_ids"], batch["view_attention_mask"]).float()
        if self.cfg.negatives.weighting != "none":
            inputs.image_cluster, inputs.text_cluster = self._clusters(batch["id"])
        if "pseudo_text" in needed:
            inputs.pseudo_text, inputs.pseudo_mask = self._pseudo(batch["id"])
        return inputs

    def epoch_batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        """This rank's augmented torch batches of an epoch; every draw from the trial's seed."""
        seed = self.cfg.optim.seed
        draws = seeding.rng(seed, seeding.AUGMENT, epoch, self.rank, self.cfg.optim.augment_salt)
        for decoded in self.data.epoch(epoch, seed, self.rank, self.world, self.local_batch):
            yield to_torch(self.augment.augment(decoded, draws), self.device)

    def train_epoch(self, stage: Stage, optimizer, scheduler, params, epoch: int) -> dict[str, float]:
        sums: dict[str, float] = {}
        steps, start, waited = 0, time.perf_counter(), 0.0
        spread: list[int] = []  # clusters per local batch, when batches are cluster-filled
        seeding.seed_torch_epoch(self.cfg.optim.seed, epoch, self.rank)  # dropout
        batches = self.epoch_batches(epoch)
        if self.cfg.batching.mode == "cluster_hard":
            batches = self.hard_batches(batches, seeding.rng(self.cfg.optim.seed, seeding.HARD_BATCHES, epoch, self.rank))
        while steps < self.steps_per_epoch:  # keep ranks in lockstep whatever the split
            asked = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - asked
            # Streamed, every rank takes part in the check, the one that ran out included.
            go_on = self._every_rank_has_a_batch(batch is not None) if self.lockstep else batch is not None
            if not go_on:
                break
            startup.mark("first_batch")
            if self.batch_clusters:
                spread.append(len({self.batch_clusters.get(i, -1) for i in batch["id"]}))
            terms = self.objective(self._inputs(batch, stage), self.model.logit_scale, stage.weights)
            if not torch.isfinite(terms["total"]):
                # A diverged trial fails with its reason (the sweep records it), not a NaN leaderboard row.
                raise FloatingPointError(
                    f"loss is {terms['total'].item()} at epoch {epoch + 1}, step {steps + 1} of stage {stage.name!r}: "
                    f"the trial diverged (optim.lr={self.cfg.optim.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(terms["total"]).backward()
            average_gradients(params, self.world)
            self.scaler.unscale_(optimizer)  # clip the true gradients (a no-op unless fp16)
            if self.cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
            self.scaler.step(optimizer)  # skips the step if fp16 gradients overflowed
            startup.mark("first_step")
            self.scaler.update()
            scheduler.step()
            self.model.clamp_logit_scale()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            steps += 1
        seconds = time.perf_counter() - start
        for _ in batches:  # finish the shard's epoch, so the next one starts cleanly on every rank
            pass
        names = sorted(sums)
        totals = torch.tensor([sums[n] for n in names], dtype=torch.float64, device=self.device)
        if self.world > 1:  # the reported loss is the global batch's: the mean over ranks
            dist.all_reduce(totals)
            totals /= self.world
        metrics = {f"loss/{name}": total / max(steps, 1) for name, total in zip(names, totals.tolist())}
        metrics["samples_per_s"] = steps * self.cfg.optim.batch_size / seconds
        metrics["data_wait_s"] = waited  # time the loop stood waiting for its next batch (data + augmentation)
        metrics["logit_scale"] = self.model.logit_scale.exp().item()
        metrics["steps"] = steps
        if spread:
            metrics["batch_clusters"] = float(np.mean(spread))
        return {**metrics, **self._skip_metrics(epoch)}

    def _every_rank_has_a_batch(self, mine: bool) -> bool:
        """Whether every rank filled this step's batch: streamed shards drop their skipped rows,
        so one rank may run out first, and a rank stepping alone would wait in all-reduce forever."""
        flag = torch.tensor([int(mine)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _skip_metrics(self, epoch: int) -> dict[str, float]:
        """The epoch's samples read and skipped (by reason), over all ranks; fails the trial when
        more than `data.max_skipped_fraction` of them were skipped."""
        counts = self.data.counts()
        keys = ("read", *SKIP_REASONS)
        values = torch.tensor([counts.get(k, 0) for k in keys], dtype=torch.float64, device=self.device)
        if self.lockstep:  # streamed: each rank counted its own shard
            dist.all_reduce(values)
        found = dict(zip(keys, values.tolist()))
        check_skipped(found, self.settings.max_skipped_fraction, f"epoch {epoch + 1}")
        skipped = {f"data/skipped/{reason}": found[reason] for reason in SKIP_REASONS if found[reason]}
        return {"data/read": found["read"], "data/skipped": sum(skipped.values()), **skipped}

    # ---- checkpoints ---------------------------------------------------------------------

    def state(self, epoch: int, stage_index: int, optimizer, scheduler) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "stage": stage_index,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "assignments": self.assignments,
            "centroid_cosine": self.objective.cluster_state(),  # paper B: with the assignments, or the loss cannot index
            "batch_clusters": self.batch_clusters,  # a resumed run regroups batches as the original did
            # MCIP's pseudo-captions were mined with the image tower at the stage's start; mining
            # again after a resume would use the tower as it trained since
            "pseudo": self.pseudo_state(),
        }

    def pseudo_state(self) -> dict[str, Any] | None:
        if not hasattr(self, "pseudo_indices"):
            return None
        return {"rows": self.pseudo_rows, "indices": self.pseudo_indices, "text": self.pseudo_text}

    def load_pseudo_state(self, state: dict[str, Any]) -> None:
        self.pseudo_rows, self.pseudo_indices, self.pseudo_text = state["rows"], state["indices"], state["text"]

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        """Every rank reports; rank 0 attaches the checkpoint of `state` (Ray Train keeps rank 0's
        metrics), if any.

        Each rank adds its Ray node id: callbacks on the controller see every rank's report, so
        the driver can record where a trial's workers ran."""
        metrics = {**metrics, NODE_KEY: ray.get_runtime_context().get_node_id()}
        self.session.report(metrics, state if self.rank == 0 else None)


@dataclass(frozen=True)
class Restored:
    """The checkpoint a run continues from."""

    state: dict[str, Any]
    metrics: dict[str, Any]  # the report of its epoch
    path: str
    own: bool  # this run's own (a restart), not `resume_from`'s


def _restore(settings: LoopSettings, session: Session) -> Restored | None:
    """The checkpoint to continue from: this run's latest, else `resume_from`, else none."""
    checkpoint, own = session.checkpoint(), True
    if checkpoint is None and settings.resume_from:
        checkpoint, own = ray.train.Checkpoint(settings.resume_from), False
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return Restored(load_checkpoint(directory), load_metrics(directory), checkpoint.path, own)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: runs the trial's stage plan, reporting once per epoch."""
    # Ray Train logs each report with all its metrics at INFO in this process; the driver's
    # per-epoch line is the progress a person reads.
    logging.getLogger().setLevel(logging.WARNING)
    if os.environ.get(startup.LOG_ENV):
        startup.mark("loop_enter", begins=True, process_start=startup.process_start())
    run_loop(LoopSettings.from_dict(config), RayTrainSession())


def run_loop(settings: LoopSettings, session: Session) -> None:
    """Runs the trial's stage plan in `session`, reporting once per epoch."""
    if os.environ.get(startup.LOG_ENV):  # (once per trial: a Train worker has marked it already)
        startup.mark("loop_enter", process_start=startup.process_start())
    trial = Trial(settings, session)
    cfg = trial.cfg
    restored = _restore(settings, session)
    saved, saved_metrics = (restored.state, restored.metrics) if restored is not None else (None, {})
    start_epoch = 0
    if saved is not None:
        trial.model.load_state_dict(saved["model"])
        trial.objective.load_state_dict(saved["objective"], strict=False)
        trial.assignments = saved["assignments"]
        trial.objective.load_cluster_state(saved["centroid_cosine"])
        trial.batch_clusters = saved.get("batch_clusters", {})
        start_epoch = saved["epoch"]
    plan = stage_plan(cfg)
    if restored is not None and restored.own and start_epoch < sum(stage.epochs for stage in plan):
        # A restart: the process that stored this checkpoint may have died before its report
        # reached the driver. Send it again, with no new checkpoint; the tracker, the searcher
        # and ASHA ignore an epoch they already have.
        trial.report({**restored.metrics, CHECKPOINT_PATH_KEY: restored.path}, None)
    epoch = 0
    for stage_index, stage in enumerate(plan):
        stage_end = epoch + stage.epochs
        if stage_end <= start_epoch:
            epoch = stage_end
            continue
        groups = param_groups(trial.modules, stage, cfg.optim.lr, cfg.optim.weight_decay, cfg.schedule.proxy_lr_multiplier)
        params = [p for g in groups for p in g["params"]]
        optimizer = torch.optim.AdamW(groups)
        scheduler = cosine_with_warmup(optimizer, cfg.optim.warmup_steps, stage.epochs * trial.steps_per_epoch)
        resuming_stage = saved is not None and saved["stage"] == stage_index and saved["epoch"] > epoch
        if resuming_stage:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        if any("pseudo_text" in TERMS[name].needs for name in stage.weights):
            if resuming_stage and saved.get("pseudo"):
                trial.load_pseudo_state(saved["pseudo"])  # as mined when the stage began
            else:
                trial.mine_pseudo_captions()  # with the text tower as it is, frozen for this stage
        first = max(epoch, start_epoch)
        for epoch in range(first, stage_end):
            plan = reclustering(cfg, epoch, settings.n_train, bool(trial.assignments), bool(trial.batch_clusters))
            if plan.negatives:
                trial.recluster(*plan.negatives)
            if plan.batches:
                trial.recluster_batches(plan.batches)
            metrics = {"epoch": epoch + 1, "stage": stage.name, **trial.train_epoch(stage, optimizer, scheduler, params, epoch)}
            startup.mark("epoch_trained")
            if trial.suite is not None:
                results, _ = trial.suite.score(trial.model, settings.tokenizer_dir, cfg.model.max_length, trial.device)
                metrics.update(flatten(results))
            startup.mark("epoch_scored")
            trial.report(metrics, trial.state(epoch + 1, stage_index, optimizer, scheduler))
            startup.mark("reported")
        epoch = stage_end
    if saved is not None and start_epoch >= epoch:
        # Restored from the last epoch's checkpoint (the driver died or was stopped after the
        # checkpoint but perhaps before its report arrived): report it again so the run ends
        # with its final metrics; the driver's tracker ignores an epoch it already has.
        trial.report(saved_metrics, saved)
