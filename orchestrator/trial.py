"""Run one trial: validate, size resources, build the Ray Dataset and fit a TorchTrainer.

`clipsweep train` and the sweep's Tune trainable both come through `prepare_trial`, so a
trial behaves the same alone and inside a sweep; a sweep's one-worker trials then run the
same loop in their Tune actor (`run_trial_in_actor`) instead of a TorchTrainer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs
import pyarrow.parquet as pq
import ray
import ray.train
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from clipsweep.trainers import startup
from clipsweep.trainers.checkpoint import CHECKPOINT_FILE, METRICS_FILE
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.loading import Preprocess, build_train_dataset
from clipsweep.trainers.data.scenes import ATTRIBUTES
from clipsweep.trainers.data.shards import DataFormatError, resolve_shards
from clipsweep.trainers.data.synthetic import ensure_synthetic
from clipsweep.trainers.evaluation.settings import SuiteSettings
from clipsweep.trainers.schedules import needs_views
from clipsweep.trainers.session import TrialActorSession
from clipsweep.trainers.train_loop import LoopSettings, run_loop, train_loop_per_worker
from clipsweep.trainers.typed import unknown_field


@dataclass(frozen=True)
class TrialData:
    """Where a trial's data lies and what the driver knows of it before any worker starts."""

    train: str
    tokenizer_dir: str
    heldout: str | None
    n_train: int
    n_classes: int  # 0 when the training data has no labels
    has_captions: bool = True  # a `captions` list column (needed to mine pseudo-captions)
    decoded: DecodedSet | None = field(default=None, compare=False, repr=False)  # shared by a sweep's trials

    def default_suite(self) -> SuiteSettings | None:
        """synthetic10 on the held-out split, when the data has one."""
        return SuiteSettings("synthetic10", heldout=self.heldout) if self.heldout else None

    @classmethod
    def from_paths(cls, train: str, tokenizer_dir: str, heldout: str | None = None) -> TrialData:
        """Reads row counts and labels from the shards' footers and label column (no Ray).

        Raises:
            DataFormatError: a path that does not exist or a shard of the wrong layout.
        """
        # Absolute from here on: trials run in other processes (and a Ray job's driver may
        # lose its working directory, see `api.steady_cwd`), which resolve relative paths elsewhere.
        train, tokenizer_dir = absolute_path(train), absolute_path(tokenizer_dir)
        heldout = absolute_path(heldout) if heldout is not None else None
        files = _shards("data.train", train)
        if heldout is not None:
            needed = ["captions", "label", *ATTRIBUTES]
            for path in _shards("data.heldout", heldout):
                missing = [c for c in needed if c not in pq.read_schema(path).names]
                if missing:
                    raise DataFormatError(
                        f"{path}: data.heldout lacks column {missing[0]!r}; synthetic10 needs the held-out split "
                        f"of a `clipsweep data synthetic` corpus (columns {', '.join(needed)})"
                    )
        if not os.path.isdir(tokenizer_dir):
            raise DataFormatError(f"data.tokenizer={tokenizer_dir!r}: no such directory")
        n_train = sum(pq.read_metadata(f).num_rows for f in files)
        n_classes = 0
        if "label" in pq.read_schema(files[0]).names:
            labels = [v for f in files for v in pq.read_table(f, columns=["label"]).column(0).to_pylist() if v is not None]
            n_classes = max(labels) + 1 if labels else 0
        return cls(train, tokenizer_dir, heldout, n_train, n_classes, "captions" in pq.read_schema(files[0]).names)

    def with_decoded_training_set(self, cfg: TrialConfig) -> TrialData:
        """These data with the training set decoded once, as `cfg` decodes it, into the object
        store, for every trial that decodes it the same way (`run_trial` checks the key): a
        sweep then decodes once, not once per trial. Unchanged when the set is too large to
        hold decoded (it streams, decoded every epoch). Needs Ray."""
        preprocess = trial_preprocess(cfg, self)
        ray.data.DataContext.get_current().enable_progress_bars = False
        dataset, in_memory = build_train_dataset(self.train, preprocess)
        if not in_memory:
            return self
        return dataclasses.replace(self, decoded=DecodedSet(decode_key(self.train, preprocess), dataset))

    @classmethod
    def synthetic(cls, n: int = 10_000, seed: int = 0, image_size: int = 64, cache_dir: str | None = None) -> TrialData:
        """The embedded default corpus, generated into the cache on first use."""
        corpus = ensure_synthetic(cache_dir, n=n, seed=seed, image_size=image_size)
        return cls.from_paths(corpus.split_dir("train"), corpus.tokenizer_dir, corpus.split_dir("heldout"))


@dataclass(frozen=True)
class DecodedSet:
    """A training set decoded into the object store, and what its content depends on."""

    key: tuple
    dataset: ray.data.Dataset


def decode_key(train: str, preprocess: Preprocess) -> tuple:
    """Everything that changes what `Preprocess.decode` makes of the training set: each shard
    file (path, size, modification time), the tokenizer's files likewise, the image side and
    the token length. (Crops, views and token drops are drawn after, by the workers.)"""

    def stamp(path: str) -> tuple[str, int, int]:
        info = os.stat(path)
        return path, info.st_size, info.st_mtime_ns

    tokenizer = sorted(stamp(e.path) for e in os.scandir(preprocess.tokenizer_dir) if e.is_file())
    shards = tuple(stamp(f) for f in resolve_shards(train))
    return shards, tuple(tokenizer), preprocess.image_size, preprocess.max_length


def trial_preprocess(cfg: TrialConfig, data: TrialData) -> Preprocess:
    """How a trial's workers turn shard rows into model inputs."""
    return Preprocess(
        cfg.model.tokenizer_dir(data.tokenizer_dir),
        image_size=cfg.model.image_size,
        max_length=cfg.model.max_length,
        views=needs_views(cfg),
        token_drop=cfg.unimodal.token_drop,
    )


def _shards(field: str, path: str) -> list[str]:
    """The shard files of a `data:` path; errors name the field and its value."""
    try:
        return resolve_shards(path)
    except DataFormatError as e:
        reason = "does not exist" if "no such shard" in str(e) else str(e).removeprefix(f"{path}: ")
        raise DataFormatError(
            f"{field}={path!r} {reason}; allowed: a folder of Parquet shards (from `clipsweep data synthetic` or "
            "`clipsweep data convert`), a shard file or a glob"
        ) from None


def absolute_path(path: str) -> str:
    """A local path made absolute; a URI (`s3://...`) as it is."""
    return path if "://" in path else os.path.abspath(path)


_DATA_KEYS = ("synthetic", "train", "tokenizer", "heldout")


def data_from_doc(doc: dict[str, Any] | None, image_size: int = 64) -> TrialData:
    """The `data:` section of a config or sweep spec: the embedded corpus or shard paths.

    `{synthetic: {n: 10000, seed: 0}}` (generated into the cache on first use) or
    `{train: DIR, tokenizer: DIR, heldout: DIR}` (heldout optional).

    Raises:
        ValueError: an unknown or missing key, named `data.<key>`.
        DataFormatError: a path that does not exist or shards of the wrong layout.
    """
    doc = doc or {"synthetic": {}}
    if not isinstance(doc, dict):
        raise ValueError(f"data={doc!r}; expected a mapping with `synthetic` or `train` + `tokenizer`")
    unknown = sorted(set(doc) - set(_DATA_KEYS))
    if unknown:
        raise ValueError(unknown_field(f"data.{unknown[0]}", _DATA_KEYS))
    if "synthetic" in doc:
        params = doc["synthetic"] or {}
        extra = sorted(set(params) - {"n", "seed"})
        if extra:
            raise ValueError(unknown_field(f"data.synthetic.{extra[0]}", ("n", "seed")))
        return TrialData.synthetic(image_size=image_size, **params)
    for key in ("train", "tokenizer"):
        if key not in doc:
            raise ValueError(f"data.{key} is missing; shards need data.train and data.tokenizer (data.heldout optional)")
    return TrialData.from_paths(doc["train"], doc["tokenizer"], doc.get("heldout"))


def check_trial(cfg: TrialConfig, data: TrialData, workers: int) -> None:
    """Every check that can fail before Ray starts (the config's own ran when it was built).

    Raises:
        ValueError: naming the field, its value and what is allowed.
    """
    if workers < 1:
        raise ValueError(f"workers={workers}; allowed: >= 1")
    if cfg.optim.batch_size % workers:
        raise ValueError(
            f"optim.batch_size={cfg.optim.batch_size}; allowed: a multiple of workers={workers} (each gets an equal slice)"
        )
    if cfg.optim.batch_size > data.n_train:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size}; allowed: at most the {data.n_train} training items")
    cfg.check_data(data.n_train, has_labels=data.n_classes > 0)
    if cfg.schedule.kind == "two_stage" and cfg.schedule.pseudo_captions and not data.has_captions:
        raise ValueError("schedule.pseudo_captions=true needs a `captions` column in the training shards")


def check_resume(path: str, flag: str = "resume_from") -> None:
    """`path` (local or any pyarrow URI) is a train-loop checkpoint folder.

    Raises:
        FileNotFoundError: naming `flag`, the path and what it should hold.
    """
    fs, root = pyarrow.fs.FileSystem.from_uri(absolute_path(path))
    if fs.get_file_info(f"{root}/{CHECKPOINT_FILE}").type != pyarrow.fs.FileType.File:
        raise FileNotFoundError(
            f"{flag} {path!r}: no checkpoint there ({CHECKPOINT_FILE} missing); allowed: a checkpoint folder of "
            "an earlier run, e.g. STORAGE/NAME/checkpoint_000002"
        )


def ensure_ray(workers: int, cpus_per_worker: float, quiet: bool = False) -> None:
    """Starts a local Ray if none is connected, with room for the workers plus data tasks.

    Locally, Ray gets max(cores, workers * cpus_per_worker + 2) logical CPUs: the +2 keep Ray
    Data's decode tasks schedulable next to the Train workers (with exactly the cores, 2 workers
    on 2 cores leave Ray Data no CPU and the first epoch never starts).

    Raises:
        ValueError: the connected cluster has fewer CPUs than the workers need.
    """
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"configure_logging": False, "log_to_driver": not quiet}
        if quiet:
            ray._private.worker._worker_logs_enabled = False  # raylet warnings too (see tune.start_ray)
            logging.getLogger("ray.data").setLevel(logging.ERROR)  # the driver's dataset plans and tips
        if os.environ.get("RAY_ADDRESS"):
            ray.init(**kwargs)
        else:
            ray.init(num_cpus=max(os.cpu_count() or 1, int(workers * cpus_per_worker) + 2), **kwargs)
    available = ray.cluster_resources().get("CPU", 0)
    if workers * cpus_per_worker > available:
        raise ValueError(f"workers={workers} x {cpus_per_worker} CPU; allowed: at most {available:g} CPUs in this Ray cluster")


def epoch_line(m: dict[str, Any]) -> str:
    """One epoch's report as a progress line."""
    bench = f"  bench {m['bench/mean_primary']:.3f}" if "bench/mean_primary" in m else ""
    return (f"epoch {m['epoch']} [{m['stage']}]  loss {m['loss/total']:.4f}  "
            f"{m['samples_per_s']:.0f} samples/s  1/t {m['logit_scale']:.1f}{bench}")  # fmt: skip


class EpochLog(ray.train.UserCallback):
    """Prints one line per reported epoch (runs in the Train controller; Ray forwards it)."""

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        print(epoch_line(metrics[0]), flush=True)


class EpochWatcher(threading.Thread):
    """Calls `say` with each epoch's line as its checkpoint lands in `run_dir` (local or any
    pyarrow URI), from the driver: a line Ray forwards from the Train controller carries a
    "(TrainController pid=...)" prefix and colour codes. Checkpoints there before the start (a
    resumed run's) are not repeated."""

    def __init__(self, run_dir: str, say: Callable[[str], None], every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.fs, self.root = pyarrow.fs.FileSystem.from_uri(absolute_path(run_dir))
        self.say, self.every_s = say, every_s
        self.done = threading.Event()
        self.seen = set(self._finished())

    def _finished(self) -> list[str]:
        """Checkpoint folders whose metrics are written, oldest first."""
        found = self.fs.get_file_info(pyarrow.fs.FileSelector(self.root, allow_not_found=True, recursive=True))
        return sorted(f.path.rsplit("/", 1)[0] for f in found if f.base_name == METRICS_FILE)

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self._report_new()

    def stop(self) -> None:
        """Reports what landed since the last look, then ends the thread."""
        self.done.set()
        self.join()
        self._report_new()

    def _report_new(self) -> None:
        for folder in self._finished():
            if folder not in self.seen:
                with self.fs.open_input_stream(f"{folder}/{METRICS_FILE}") as f:
                    try:
                        metrics = json.loads(f.read())
                    except json.JSONDecodeError:  # still being copied into storage: next look
                        continue
                self.seen.add(folder)
                self.say(epoch_line(metrics))


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
        datasets={"train": dataset},
        dataset_config=_data_config(settings.in_memory),
        run_config=RunConfig(
            name=name or time.strftime("trial-%Y%m%d-%H%M%S"),
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=None),  # every epoch: its metrics are the history
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
) -> None:
    """Trains a one-worker trial in this process (a Tune trial's actor), with no TorchTrainer.

    The same loop, data, seeds and checkpoint format as `run_trial` with `workers=1`; each
    epoch's report goes to `forward` once its checkpoint is stored under `run_dir`, and a
    checkpoint already there (a restarted trial) is continued from.

    Raises:
        ValueError: bad input, before the loop starts.
    """
    settings, dataset = prepare_trial(cfg, data, 1, cpus, None, suite, eval_tier, quiet=True)
    run_loop(settings, TrialActorSession(dataset, absolute_path(run_dir), forward, threads=max(1, int(cpus))))


def prepare_trial(
    cfg: TrialConfig,
    data: TrialData,
    workers: int,
    cpus_per_worker: float,
    resume_from: str | None,
    suite: SuiteSettings | None,
    eval_tier: str,
    quiet: bool,
) -> tuple[LoopSettings, ray.data.Dataset]:
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
    ensure_ray(workers, cpus_per_worker, quiet)
    ray.data.DataContext.get_current().enable_progress_bars = False  # EpochLog is the progress
    preprocess = trial_preprocess(cfg, data)
    shared = data.decoded
    if shared is not None and shared.key == decode_key(data.train, preprocess):
        dataset, in_memory = shared.dataset, True  # decoded once for the sweep
    else:
        dataset, in_memory = build_train_dataset(data.train, preprocess)
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
    )
    return settings, dataset


def _data_config(in_memory: bool) -> DataConfig:
    """How Ray Train hands the training set to the workers, so that its order is reproducible.

    In memory: every worker gets the whole set and draws its own slice of a seeded permutation
    (`epochs.InMemoryTrainingSet`). Streamed: split among the workers with `preserve_order`, which
    makes Ray Data's output order, and so each worker's shard, the same in every run.
    """
    if in_memory:
        return DataConfig(datasets_to_split=[])
    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return DataConfig(execution_options=options)


def epoch_history(result: ray.train.Result) -> list[dict[str, Any]]:
    """Each reported epoch's metrics, in order (read from the kept checkpoints)."""
    return sorted((metrics for _, metrics in result.best_checkpoints), key=lambda m: m["epoch"])
