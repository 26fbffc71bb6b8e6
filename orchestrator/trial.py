"""Launching one trial: a TorchTrainer over Ray Train workers, or the same loop in a Tune actor.

`clipsweep train` and the sweep's Tune trainable both come through `prepare_trial`, so a
trial behaves the same alone and inside a sweep; a sweep's one-worker trials then run the
same loop in their Tune actor (`run_trial_in_actor`) instead of a TorchTrainer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import ray
import ray.train
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from clipsweep.trainers import startup
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.loading import build_train_dataset, streams
from clipsweep.trainers.evaluation.settings import SuiteSettings
from clipsweep.trainers.retention import SCORE_METRIC, KeepPolicy
from clipsweep.trainers.session import TrialActorSession
from clipsweep.trainers.train_loop import LoopSettings, run_loop, train_loop_per_worker

from .epoch_log import EpochLog
from .ray_start import local_cpus, require_cpus, start_ray
from .trial_data import TrialData, absolute_path, check_resume, check_trial, decode_key, trial_preprocess


def run_trial(
    cfg: TrialConfig,
    data: TrialData,
    workers: int = 1,
    storage_path: str | None = None,
    name: str | None = None,
    resume_from: str | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
    eval_tier: str = "cheap",
    callbacks: list[ray.train.UserCallback] | None = None,
    suite: SuiteSettings | None = None,
    max_failures: int = 0,
    quiet: bool = False,
    keep: KeepPolicy = "all",
) -> ray.train.Result:
    """Fits one trial with Ray Train; every epoch's metrics come back with its checkpoint.

    Args:
        cfg: the trial config.
        data: training shards, tokenizer and held-out split.
        workers: Ray Train workers (data-parallel; the global batch is split equally).
        storage_path: where checkpoints go (any fsspec URI); default ~/ray_results.
        name: run name under the storage path; default `trial-<time>`. Ray Train restores a run
            whose name already exists there, so reusing a name continues that run.
        resume_from: a checkpoint directory of an earlier run to continue from.
        cpus_per_worker: CPUs each worker reserves.
        gpus_per_worker: GPUs each worker reserves; None: one if the Ray cluster has GPUs, else none.
        eval_tier: the suite's tier reported each epoch (cheap or full).
        callbacks: Ray Train callbacks; default prints one line per epoch (`EpochLog`).
        quiet: keep Ray's worker and raylet output off this process's console (when it starts Ray).
        suite: the benchmark scored each epoch; default synthetic10 on the data's held-out split
            (none when the data has none).
        max_failures: restarts of the worker group from its last checkpoint after a worker
            dies (Ray Train's `FailureConfig`); -1 retries forever.
        keep: which checkpoints stay (`trainers/retention.py`); `epoch_history` reads the kept
            ones, so a single trial keeps all by default.

    Raises:
        ValueError: bad input, before any worker starts.
    """
    settings, dataset = prepare_trial(cfg, data, workers, cpus_per_worker, resume_from, suite, eval_tier, quiet)
    if gpus_per_worker is None:  # ask the cluster: a Tune trial's own process sees no GPU
        gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    gpus = gpus_per_worker
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus} if gpus else {})}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=dataclasses.asdict(settings),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=resources),
        # In memory, every worker gets the whole decoded set (`epochs.InMemoryTrainingSet`);
        # streamed, each reads its own files (`loading.rank_stream`): no split by Ray Train.
        datasets={"train": dataset} if dataset is not None else {},
        dataset_config=DataConfig(datasets_to_split=[]),
        run_config=RunConfig(
            name=name or time.strftime("trial-%Y%m%d-%H%M%S"),
            storage_path=storage_path,
            checkpoint_config=_checkpoint_config(keep, scored=settings.suite is not None),
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=[EpochLog()] if callbacks is None else callbacks,
        ),
    )
    return trainer.fit()


def run_trial_in_actor(
    cfg: TrialConfig,
    data: TrialData,
    run_dir: str,
    forward: Callable[[dict[str, Any]], None],
    cpus: float = 1.0,
    eval_tier: str = "cheap",
    suite: SuiteSettings | None = None,
    keep: KeepPolicy = "all",
) -> None:
    """Trains a one-worker trial in this process (a Tune trial's actor), with no TorchTrainer.

    The same loop, data, seeds and checkpoint format as `run_trial` with `workers=1`; each
    epoch's report goes to `forward` once its checkpoint is stored under `run_dir`, and a
    checkpoint already there (a restarted trial) is continued from. `keep` says which
    checkpoints stay, as in `run_trial`.

    Raises:
        ValueError: bad input, before the loop starts.
    """
    settings, dataset = prepare_trial(cfg, data, 1, cpus, None, suite, eval_tier, quiet=True)
    session = TrialActorSession(dataset, absolute_path(run_dir), forward, threads=max(1, int(cpus)), keep=keep)
    run_loop(settings, session)


def prepare_trial(
    cfg: TrialConfig,
    data: TrialData,
    workers: int,
    cpus_per_worker: float,
    resume_from: str | None,
    suite: SuiteSettings | None,
    eval_tier: str,
    quiet: bool,
) -> tuple[LoopSettings, ray.data.Dataset | None]:
    """Checks a trial and builds what its workers get: their settings and the training set
    (the sweep's decoded copy when its decode key matches).

    Raises:
        ValueError: bad input, before Ray is asked for anything.
    """
    check_trial(cfg, data, workers)
    if resume_from is not None:
        check_resume(resume_from)
    suite = suite or data.default_suite()
    if suite is not None:
        suite.check(images=False)  # every image was checked by the caller's preflight
    start_ray(local_cpus(workers * cpus_per_worker), quiet=quiet)
    require_cpus(workers * cpus_per_worker, f"workers={workers} x {cpus_per_worker} CPU")
    ray.data.DataContext.get_current().enable_progress_bars = False  # EpochLog is the progress
    preprocess = trial_preprocess(cfg, data)
    shared = data.decoded
    dataset: ray.data.Dataset | None
    if shared is not None and shared.key == decode_key(data.source, preprocess):
        dataset, in_memory = shared.dataset, True  # decoded once for the sweep
    elif streams(data.n_train, preprocess.image_size, data.stream):
        dataset, in_memory = None, False  # each worker streams its own files
    else:
        dataset, in_memory = build_train_dataset(data.source, preprocess)
    startup.mark("dataset_built")
    settings = LoopSettings(
        trial=cfg.to_dict(),
        train=data.train,
        n_train=data.n_train,
        n_classes=data.n_classes,
        tokenizer_dir=preprocess.tokenizer_dir,
        suite=suite.to_dict() if suite else None,
        eval_tier=eval_tier,
        resume_from=resume_from,
        augment=dataclasses.asdict(preprocess),  # the workers crop and draw captions from their seeded streams
        in_memory=in_memory,
        max_skipped_fraction=data.max_skipped_fraction,
        stream_source=None if in_memory else dataclasses.asdict(data.source),
    )
    return settings, dataset


def _checkpoint_config(keep: KeepPolicy, scored: bool) -> CheckpointConfig:
    """Ray Train's retention for `keep`: the best by the search score (when the trial is scored)
    and the latest, which Ray Train never deletes; or every epoch's."""
    if keep == "all":
        return CheckpointConfig(num_to_keep=None)
    return CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=SCORE_METRIC if scored else None)


def epoch_history(result: ray.train.Result) -> list[dict[str, Any]]:
    """Each reported epoch's metrics, in order (read from the kept checkpoints)."""
    return sorted((metrics for _, metrics in result.best_checkpoints), key=lambda m: m["epoch"])
