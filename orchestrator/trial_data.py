"""What a trial trains on, known on the driver before any worker starts: data sources, the decode cache, and the checks of a trial against its data.

`data_from_doc` reads a spec's or a train config's `data:` mapping; `TrialData` holds the paths
and what the driver learnt of them (item count, labels, captions), and decodes the training set
once per sweep when it fits in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs
import pyarrow.parquet as pq
import ray
import ray.train

from clipsweep.trainers.checkpoint import CHECKPOINT_FILE
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.loading import Preprocess, build_train_dataset, streams
from clipsweep.trainers.data.scenes import ATTRIBUTES
from clipsweep.trainers.data.shards import DataFormatError, resolve_shards
from clipsweep.trainers.data.sources import Source, check_first_shard, resolve_source, source_size
from clipsweep.trainers.data.synthetic import ensure_synthetic
from clipsweep.trainers.evaluation.settings import SuiteSettings
from clipsweep.trainers.schedules import needs_views
from clipsweep.trainers.typed import unknown_field


@dataclass(frozen=True)
class TrialData:
    """Where a trial's data lies and what the driver knows of it before any worker starts."""

    train: str | tuple[str, ...]  # a folder, file, glob or pattern, or a list of tar shards (`sources.py`)
    tokenizer_dir: str
    heldout: str | None
    n_train: int
    n_classes: int  # 0 when the training data has no labels
    has_captions: bool = True  # a `captions` list column (needed to mine pseudo-captions)
    stream: bool = False  # `data.stream`: decode as the set streams, every epoch, whatever its size
    caption_field: str | None = None  # `data.caption_field`: WebDataset captions from this field of `{key}.json`
    max_skipped_fraction: float = 0.01  # `data.max_skipped_fraction`
    decoded: DecodedSet | None = field(default=None, compare=False, repr=False)  # shared by a sweep's trials

    def default_suite(self) -> SuiteSettings | None:
        """synthetic10 on the held-out split, when the data has one."""
        return SuiteSettings(heldout=self.heldout) if self.heldout else None

    @functools.cached_property
    def source(self) -> Source:
        """The training source (checked when these data were made)."""
        return resolve_source(self.train, self.caption_field)

    @classmethod
    def from_paths(
        cls,
        train: str | list[str],
        tokenizer_dir: str,
        heldout: str | None = None,
        caption_field: str | None = None,
        max_skipped_fraction: float = 0.01,
    ) -> TrialData:
        """Reads sample counts and labels from the source (Parquet footers and label column, tar
        shards' stats files or headers; no Ray) and checks the first tar shard's layout.

        Raises:
            DataFormatError: a path that does not exist or a shard of the wrong layout.
        """
        # Absolute from here on: trials run in other processes (and a Ray job's driver may
        # lose its working directory, see `sweep.steady_cwd`), which resolve relative paths elsewhere.
        train = absolute_path(train) if isinstance(train, str) else tuple(absolute_path(t) for t in train)
        tokenizer_dir = absolute_path(tokenizer_dir)
        heldout = absolute_path(heldout) if heldout is not None else None
        source = _source("data.train", train, caption_field, max_skipped_fraction)
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
        size = source_size(source)
        return cls(
            train, tokenizer_dir, heldout, size.samples, size.n_classes, size.has_captions,
            caption_field=caption_field, max_skipped_fraction=max_skipped_fraction,
        )  # fmt: skip

    def with_decoded_training_set(self, cfg: TrialConfig) -> TrialData:
        """These data with the training set decoded once, as `cfg` decodes it, into the object
        store, for every trial that decodes it the same way (`run_trial` checks the key): a
        sweep then decodes once, not once per trial. Unchanged when the set is too large to
        hold decoded (it streams, decoded every epoch). Needs Ray."""
        preprocess = trial_preprocess(cfg, self)
        ray.data.DataContext.get_current().enable_progress_bars = False
        dataset, in_memory = build_train_dataset(self.source, preprocess, stream=self.stream)
        if not in_memory:
            return self
        return dataclasses.replace(self, decoded=DecodedSet(decode_key(self.source, preprocess), dataset))

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


def decode_key(source: Source, preprocess: Preprocess) -> tuple:
    """Everything that changes what `Preprocess.decode` makes of the training set: each shard
    file (path, size, modification time; a remote one by path), the tokenizer's files likewise,
    the caption field, the image side and the token length. (Crops, views and token drops are
    drawn after, by the workers.)"""

    def stamp(path: str) -> tuple[str, int, int]:
        if "://" in path:
            return path, 0, 0
        info = os.stat(path)
        return path, info.st_size, info.st_mtime_ns

    tokenizer = sorted(stamp(e.path) for e in os.scandir(preprocess.tokenizer_dir) if e.is_file())
    shards = tuple(stamp(f) for f in source.files)
    return shards, tuple(tokenizer), source.caption_field, preprocess.image_size, preprocess.max_length


def trial_preprocess(cfg: TrialConfig, data: TrialData) -> Preprocess:
    """How a trial's workers turn shard rows into model inputs."""
    return Preprocess(
        cfg.model.tokenizer_dir(data.tokenizer_dir),
        image_size=cfg.model.image_size,
        max_length=cfg.model.max_length,
        views=needs_views(cfg),
        token_drop=cfg.unimodal.token_drop,
    )


_SHARDS_ALLOWED = "a folder of Parquet shards (from `clipsweep data synthetic` or `clipsweep data convert`), a shard file or a glob"
_SOURCES_ALLOWED = (
    f"{_SHARDS_ALLOWED}; WebDataset tar shards (a brace pattern such as shards/{{00000..00099}}.tar, a list of .tar "
    "files or a folder of them); or img2dataset's Parquet output folder (columns key, caption, jpg)"
)


def _shards(field: str, path: str) -> list[str]:
    """The shard files of a `data:` path; errors name the field and its value."""
    try:
        return resolve_shards(path)
    except DataFormatError as e:
        raise DataFormatError(f"{field}={path!r} {_reason(e, path)}; allowed: {_SHARDS_ALLOWED}") from None


def _source(field: str, value: str | tuple[str, ...], caption_field: str | None, allowed: float) -> Source:
    """The training source of `value`, its first tar shard's layout checked; errors name the field."""
    try:
        source = resolve_source(value, caption_field)
        check_first_shard(source, allowed)
        return source
    except DataFormatError as e:
        raise DataFormatError(f"{field}={_shown(value)} {_reason(e, value)}; allowed: {_SOURCES_ALLOWED}") from None


def _shown(value: str | tuple[str, ...]) -> str:
    return repr(value) if isinstance(value, str) else repr(list(value))


def _reason(error: DataFormatError, value: str | tuple[str, ...]) -> str:
    text = str(error)
    if "no such shard file" in text:
        return "does not exist"
    return text.removeprefix(f"{value}: ") if isinstance(value, str) else text


def absolute_path(path: str) -> str:
    """A local path made absolute; a URI (`s3://...`) as it is."""
    return path if "://" in path else os.path.abspath(path)


_DATA_KEYS = ("synthetic", "train", "tokenizer", "heldout", "stream", "caption_field", "max_skipped_fraction")


def data_from_doc(doc: dict[str, Any] | None, image_size: int = 64) -> TrialData:
    """The `data:` section of a config or sweep spec: the embedded corpus or shard paths.

    `{synthetic: {n: 10000, seed: 0}}` (generated into the cache on first use) or
    `{train: SOURCE, tokenizer: DIR, heldout: DIR}` (heldout optional; SOURCE as `sources.py`
    says: clipsweep shards, WebDataset tars, img2dataset Parquet); either with `stream: true` to
    stream the training set (decoded every epoch) even when it would be held in memory,
    `caption_field` (WebDataset captions from `{key}.json`) and `max_skipped_fraction`.

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
    fraction = doc.get("max_skipped_fraction", 0.01)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"data.max_skipped_fraction={fraction!r}; allowed: a number in [0, 1) (default 0.01)")
    caption_field = doc.get("caption_field")
    if caption_field is not None and not (isinstance(caption_field, str) and caption_field):
        raise ValueError(f"data.caption_field={caption_field!r}; allowed: a field name of the samples' .json members")
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
        train = doc["train"]
        if not (isinstance(train, str) or isinstance(train, list) and train and all(isinstance(t, str) for t in train)):
            raise ValueError(f"data.train={train!r}; allowed: a path, glob or brace pattern, or a list of .tar files")
        data = TrialData.from_paths(train, doc["tokenizer"], doc.get("heldout"), caption_field, float(fraction))
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
    files = len(data.source.files)
    if streams(data.n_train, cfg.model.image_size, data.stream) and files < workers:
        raise ValueError(
            f"data.train={_shown(data.train)} has {files} shard file(s); allowed for a streamed training set: at least "
            f"one per worker (workers={workers}), since each worker streams its own files"
        )
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
