"""Where training data can lie: clipsweep's shards, WebDataset tar shards, img2dataset's Parquet.

`data.train` names one of:
- clipsweep shards: a folder of Parquet shards written by `clipsweep data`, a shard or a glob
  (`shards.py`);
- WebDataset shards, as img2dataset writes them and open_clip reads them: a brace pattern
  (`cc3m/{00000..00331}.tar`), a `.tar` file, a list of them, or a folder of `.tar` files. One
  sample per key: an image member `{key}.jpg|jpeg|png|webp`, a caption `{key}.txt` (or a field
  of `{key}.json`, `caption_field`), optionally a class id `{key}.cls`;
- img2dataset's Parquet output: a folder of `.parquet` files with columns `key`, `caption`,
  `jpg` (and its extras: url, width, status, ...).
Paths are local or URIs of any filesystem fsspec has installed (`s3://`, `gs://`, ...).

Ray Data reads every kind into clipsweep's columns plus `skip`: "" for a good sample, else one
of `SKIP_REASONS` (`Preprocess.decode` adds images that do not decode). The trainers drop
skipped rows and count them per epoch (`epochs.py`), so a broken sample costs a count, never
the epoch.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from braceexpand import braceexpand

from .shards import DataFormatError, resolve_shards

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
IMG2DATASET_COLUMNS = ("key", "caption", "jpg")
# Why a sample is skipped; each is a per-epoch metric `data/skipped/<reason>`.
SKIP_REASONS = ("no_image", "no_caption", "undecodable_image", "truncated_shard", "unreadable_shard")
KINDS = ("shards", "webdataset", "img2dataset")
# The rows of a WebDataset or img2dataset source (a label of -1: none).
ROW_SCHEMA = pa.schema(
    [("id", pa.string()), ("image", pa.binary()), ("caption", pa.string()), ("label", pa.int64()), ("skip", pa.string())]
)


@dataclass(frozen=True)
class Source:
    """A training source: its kind (one of `KINDS`) and its files, in order."""

    kind: str
    files: tuple[str, ...]
    caption_field: str | None = None  # webdataset: the caption is this field of `{key}.json`


@dataclass(frozen=True)
class SourceSize:
    """What the driver learns of a source before training: samples, classes, caption lists."""

    samples: int
    n_classes: int  # 0: no labels
    has_captions: bool  # a `captions` list per item (clipsweep shards only)


def _filesystem(path: str) -> fsspec.AbstractFileSystem:
    try:
        return fsspec.core.url_to_fs(path)[0]
    except (ImportError, ValueError) as e:  # fsspec names the package to install
        scheme = path.split("://", 1)[0]
        raise DataFormatError(f"{path}: no filesystem for {scheme}:// is installed ({e})") from None


def expand(value: str | Iterable[str]) -> list[str]:
    """A pattern or list as file names, brace ranges expanded (`{000..009}`, `{a,b}`) as open_clip does."""
    values = [value] if isinstance(value, str) else list(value)
    return [name for v in values for name in braceexpand(str(v))]


def resolve_source(value: str | Iterable[str], caption_field: str | None = None) -> Source:
    """What `value` names, checked from directory listings and Parquet footers only.

    Raises:
        DataFormatError: a pattern or list that matches no file, a URI whose filesystem is not
            installed, a folder without shards, shards of the wrong layout.
    """
    names = expand(value)
    if not names:
        raise DataFormatError(f"{value!r}: an empty list")
    if all(n.endswith(".tar") for n in names):
        missing = [n for n in names if not _filesystem(n).isfile(n)]
        if missing:
            raise DataFormatError(f"{missing[0]}: no such tar shard ({len(missing)} of the {len(names)} named are missing)")
        return Source("webdataset", tuple(names), caption_field)
    if len(names) == 1:
        fs = _filesystem(names[0])
        if fs.isdir(names[0]):
            files = [fs.unstrip_protocol(p) if "://" in names[0] else p for p in sorted(fs.find(names[0]))]
            tars = [f for f in files if f.endswith(".tar")]
            if tars:
                return Source("webdataset", tuple(tars), caption_field)
            parquet = [f for f in files if f.endswith(".parquet")]
            if parquet and set(IMG2DATASET_COLUMNS) <= set(_schema(parquet[0]).names):
                return Source("img2dataset", tuple(parquet))
        elif names[0].endswith(".parquet") and fs.isfile(names[0]):
            if set(IMG2DATASET_COLUMNS) <= set(_schema(names[0]).names):
                return Source("img2dataset", (names[0],))
    return Source("shards", tuple(resolve_shards(names)))


def _schema(path: str) -> pa.Schema:
    try:
        with fsspec.open(path, "rb") as f:
            return pq.read_schema(f)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFormatError(f"{path}: not a readable Parquet file ({e})") from e


def _footer_rows(path: str) -> int:
    with fsspec.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def source_size(source: Source) -> SourceSize:
    """Samples and classes of a source.

    Parquet sources read their footers (and clipsweep shards their `label` column). A tar shard
    takes its count from img2dataset's `{shard}_stats.json` (`successes`) or open_clip's
    `sizes.json` beside it; else it is scanned once (headers and `.cls` members), which for a
    remote shard means reading it whole.
    """
    if source.kind == "shards":
        files = list(source.files)
        names = pq.read_schema(files[0]).names
        labels = [v for f in files for v in pq.read_table(f, columns=["label"]).column(0).to_pylist()] if "label" in names else []
        present = [v for v in labels if v is not None]
        return SourceSize(sum(pq.read_metadata(f).num_rows for f in files), max(present) + 1 if present else 0, "captions" in names)
    if source.kind == "img2dataset":
        return SourceSize(sum(_footer_rows(f) for f in source.files), 0, False)
    samples, classes = 0, 0
    for path in source.files:
        known = _stated_size(path)
        if known is None:
            keys, labels = _scan_tar(path)
            known, classes = keys, max([classes, *(label + 1 for label in labels)])
        samples += known
    return SourceSize(samples, classes, False)


def _stated_size(path: str) -> int | None:
    """A tar shard's sample count as its writer recorded it, if it did."""
    fs = _filesystem(path)
    folder, name = posixpath.split(path)
    stats = posixpath.join(folder, name.removesuffix(".tar") + "_stats.json")
    if fs.isfile(stats):
        with fs.open(stats) as f:
            return int(json.load(f)["successes"])
    sizes = posixpath.join(folder, "sizes.json")
    if fs.isfile(sizes):
        with fs.open(sizes) as f:
            return json.load(f).get(name)
    return None


def _scan_tar(path: str) -> tuple[int, list[int]]:
    """Keys and class ids of a tar shard, from its headers (tarfile seeks past the images) and
    its `.cls` members; a truncated shard counts to where it ends."""
    keys: set[str] = set()
    labels: list[int] = []
    try:
        with fsspec.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar:
                if info.isfile():
                    folder, base = posixpath.split(info.name)
                    stem, _, extension = base.partition(".")
                    keys.add(posixpath.join(folder, stem))
                    if extension.lower() == "cls":
                        labels.append(int(tar.extractfile(info).read().strip() or -1))  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        logger.warning("%s: cannot be read to its end (%s); counted %d samples", path, e, len(keys))
    return len(keys), labels


def _tar_samples(path: str) -> Iterator[tuple[str, dict[str, bytes], str]]:
    """(key, {extension: bytes}, problem) per sample, in the shard's order, grouped as
    WebDataset groups them (consecutive members sharing the name before the basename's first
    dot). A read error ends the shard: the sample it cut is yielded with "truncated_shard", or,
    before any sample, one row with "unreadable_shard"."""
    key, members, seen = None, {}, 0
    try:
        with fsspec.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                folder, base = posixpath.split(info.name)
                stem, _, extension = base.partition(".")
                name = posixpath.join(folder, stem)
                if name != key:
                    if key is not None:
                        yield key, members, ""
                        seen += 1
                    key, members = name, {}
                members[extension.lower()] = tar.extractfile(info).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError) as e:
        logger.warning("%s: %s after %d samples; the rest of the shard is skipped", path, e, seen)
        yield (key or path), members, ("truncated_shard" if seen or key else "unreadable_shard")
        return
    if key is not None:
        yield key, members, ""


def _webdataset_row(key: str, members: dict[str, bytes], problem: str, caption_field: str | None) -> dict:
    image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
    caption = None
    if caption_field is None and "txt" in members:
        caption = members["txt"].decode("utf-8", errors="replace").strip()
    elif caption_field is not None and "json" in members:
        caption = json.loads(members["json"]).get(caption_field)
    label = int(members["cls"].strip() or -1) if "cls" in members else -1
    if not problem:
        problem = "no_image" if image is None else "no_caption" if not caption else ""
    return {"id": key, "image": image or b"", "caption": str(caption or ""), "label": label, "skip": problem}


def _read_tars(batch: dict[str, np.ndarray], caption_field: str | None) -> pa.Table:
    """Ray Data task: the samples of the shards in `batch["path"]`, as `ROW_SCHEMA` rows (an
    Arrow table: NumPy would store the image bytes as fixed-width strings, which drop trailing
    zero bytes)."""
    rows = [
        _webdataset_row(key, members, problem, caption_field)
        for path in batch["path"]
        for key, members, problem in _tar_samples(str(path))
    ]
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def _img2dataset_rows(batch: pa.Table) -> pa.Table:
    """Ray Data task: img2dataset's columns as `ROW_SCHEMA` rows (a missing image or caption is skipped)."""
    images, captions = batch.column("jpg").to_pylist(), batch.column("caption").to_pylist()
    skip = ["no_image" if not image else "no_caption" if not caption else "" for image, caption in zip(images, captions)]
    columns = {
        "id": [str(k) for k in batch.column("key").to_pylist()],
        "image": [image or b"" for image in images],
        "caption": [str(c or "") for c in captions],
        "label": [-1] * len(skip),
        "skip": skip,
    }
    return pa.table(columns, schema=ROW_SCHEMA)


def read_source(source: Source) -> ray.data.Dataset:
    """Ray Data rows of `source` in its files' order: clipsweep's columns (`id`, `image`,
    `caption`, and `captions`, `label` where present) plus `skip` for WebDataset and img2dataset."""
    if source.kind == "webdataset":
        paths = ray.data.from_items([{"path": p} for p in source.files], override_num_blocks=len(source.files))
        return paths.map_batches(_read_tars, batch_size=1, fn_kwargs={"caption_field": source.caption_field})
    if source.kind == "img2dataset":
        filesystem = _filesystem(source.files[0]) if "://" in source.files[0] else None
        read = ray.data.read_parquet(list(source.files), columns=list(IMG2DATASET_COLUMNS), filesystem=filesystem)
        return read.map_batches(_img2dataset_rows, batch_format="pyarrow")
    present = set(pq.read_schema(source.files[0]).names)
    columns = ["id", "image", "caption", *(c for c in ("captions", "label") if c in present)]
    return ray.data.read_parquet(list(source.files), columns=columns)


def source_captions(source: Source) -> Iterator[str]:
    """Every caption of the source, in order (for training a tokenizer)."""
    if source.kind == "webdataset":
        for path in source.files:
            for key, members, problem in _tar_samples(path):
                row = _webdataset_row(key, members, problem, source.caption_field)
                if row["caption"]:
                    yield row["caption"]
        return
    for path in source.files:
        names = _schema(path).names
        name = "captions" if source.kind == "shards" and "captions" in names else "caption"
        with fsspec.open(path, "rb") as f:
            values = pq.read_table(f, columns=[name]).column(0).to_pylist()
        for value in values:
            yield from (c for c in (value if isinstance(value, list) else [value]) if c)


def check_first_shard(source: Source, allowed: float) -> None:
    """The first WebDataset shard (read whole, no other) has an image and a caption member for
    all but `allowed` (a fraction) of its keys: a layout that training would mostly skip (the
    captions in `.json` but no `caption_field`, say) fails here, before Ray.

    Raises:
        DataFormatError: naming the shard, its first key without them and what that key has.
    """
    if source.kind != "webdataset":
        return
    path, bad, seen = source.files[0], [], 0
    for key, members, problem in _tar_samples(path):
        seen += 1
        if _webdataset_row(key, members, problem, source.caption_field)["skip"]:
            bad.append((key, members))
    if bad and len(bad) / seen > allowed:
        key, members = bad[0]
        wanted = f"a field {source.caption_field!r} in {key}.json" if source.caption_field else f"{key}.txt"
        raise DataFormatError(
            f"{path}: {len(bad)} of {seen} samples lack an image or a caption, e.g. {key!r} (has "
            f"{', '.join(sorted(members)) or 'nothing'}); each key needs an image member "
            f"({'|'.join(IMAGE_EXTENSIONS)}) and {wanted}"
        )


def check_skipped(counts: dict[str, float], allowed: float, when: str) -> None:
    """Refuses more than `allowed` (a fraction) of skipped samples among `counts["read"]`.

    Raises:
        DataFormatError: naming the counts by reason and `data.max_skipped_fraction`.
    """
    read = counts.get("read", 0)
    skipped = {reason: int(counts.get(reason, 0)) for reason in SKIP_REASONS if counts.get(reason, 0)}
    total = sum(skipped.values())
    if read and total / read > allowed:
        reasons = ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in skipped.items())
        raise DataFormatError(
            f"{when}: {total} of {int(read)} samples skipped ({total / read:.1%}: {reasons}); "
            f"allowed: at most data.max_skipped_fraction={allowed:g}"
        )
