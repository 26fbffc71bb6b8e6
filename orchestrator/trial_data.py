"""What a trial trains on, known on the driver before any worker starts: data sources, the decode cache, and the checks of a trial against its data.

`data_from_doc` reads a spec's or a train config's `data:` mapping; `TrialData` holds the paths
and what the driver learnt of them (item count, labels, captions), and decodes the training set
once per sweep when it fits in memory.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs
import pyarrow.parquet as pq
import ray
import ray.train

from clipsweep.trainers.checkpoint import CHECKPOINT_FILE
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.loading import Preprocess, build_train_dataset
from clipsweep.trainers.data.scenes import ATTRIBUTES
from clipsweep.trainers.data.shards import DataFormatError, resolve_shards
from clipsweep.trainers.data.synthetic import ensure_synthetic
from clipsweep.trainers.evaluation.settings import SuiteSettings
from clipsweep.trainers.schedules import needs_views
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
    stream: bool = False  # `data.stream`: decode as the set streams, every epoch, whatever its size
    decoded: DecodedSet | None = field(default=None, compare=False, repr=False)  # shared by a sweep's trials

    def default_suite(self) -> SuiteSettings | None:
        """synthetic10 on the held-out split, when the data has one."""
        return SuiteSettings(heldout=self.heldout) if self.heldout else None

    @classmethod
    def from_paths(cls, train: str, tokenizer_dir: str, heldout: str | None = None) -> TrialData:
        """Reads row counts and labels from the shards' footers and label column (no Ray).

        Raises:
            DataFormatError: a path that does not exist or a shard of the wrong layout.
        """
        # Absolute from here on: trials run in other processes (and a Ray job's driver may
        # lose its working directory, see `sweep.steady_cwd`), which resolve relative paths elsewhere.
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
        dataset, in_memory = build_train_dataset(self.train, preprocess, stream=self.stream)
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


_DATA_KEYS = ("synthetic", "train", "tokenizer", "heldout", "stream")


def data_from_doc(doc: dict[str, Any] | None, image_size: int = 64) -> TrialData:
    """The `data:` section of a config or sweep spec: the embedded corpus or shard paths.

    `{synthetic: {n: 10000, seed: 0}}` (generated into the cache on first use) or
    `{train: DIR, tokenizer: DIR, heldout: DIR}` (heldout optional); either with `stream: true`
    to stream the training set (decoded every epoch) even when it would be held in memory.

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
    stream = doc.get("stream", False)
    if not isinstance(stream, bool):
        raise ValueError(f"data.stream={stream!r}; allowed: true or false (true streams the training set even when it fits in memory)")
    if "synthetic" in doc:
        params = doc["synthetic"] or {}
        extra = sorted(set(params) - {"n", "seed"})
        if extra:
            raise ValueError(unknown_field(f"data.synthetic.{extra[0]}", ("n", "seed")))
        data = TrialData.synthetic(image_size=image_size, **params)
    else:
        for key in ("train", "tokenizer"):
            if key not in doc:
                raise ValueError(f"data.{key} is missing; shards need data.train and data.tokenizer (data.heldout optional)")
        data = TrialData.from_paths(doc["train"], doc["tokenizer"], doc.get("heldout"))
    return dataclasses.replace(data, stream=stream)


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
