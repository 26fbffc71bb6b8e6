"""The one on-disk format the trainer reads: Parquet shards of image-text items.

One row per image (not per caption), so an image with five captions is one item both for
training (a caption is drawn per epoch, and paper C's text views need its siblings) and for
retrieval evaluation (an image query is correct if any of its captions is retrieved).

Columns:
    id        string, unique within a data set
    image     binary, the encoded image file (JPEG or PNG, stored as found)
    caption   string, the first caption
    captions  list<string>, all captions of the image (first == caption)
    label     int64, nullable: a class id where the source has one
    ...       source-specific extras (the synthetic corpus adds its scene attributes)
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = "clipsweep-shards/1"
MANIFEST_NAME = "dataset.json"

BASE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image", pa.binary()),
        ("caption", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("label", pa.int64()),
    ]
)
# What a shard must have for the loader; `captions` and `label` are optional on read.
REQUIRED_COLUMNS: dict[str, tuple[pa.DataType, ...]] = {
    "id": (pa.string(), pa.large_string()),
    "image": (pa.binary(), pa.large_binary()),
    "caption": (pa.string(), pa.large_string()),
}


class DataFormatError(ValueError):
    """Input data that does not have the expected layout; the message names file and field."""


@dataclass
class ShardWriter:
    """Buffers rows and writes `part-00000.parquet`, `part-00001.parquet`, ... into `out_dir`.

    Output is byte-identical for identical rows: no timestamps, one row group per shard.
    """

    out_dir: str
    rows_per_shard: int = 4096
    extra_fields: Sequence[pa.Field] = ()
    paths: list[str] = field(default_factory=list)
    rows_written: int = 0
    _buffer: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rows_per_shard < 1:
            raise ValueError(f"rows_per_shard={self.rows_per_shard}; must be >= 1")
        os.makedirs(self.out_dir, exist_ok=True)
        self.schema = pa.schema(list(BASE_SCHEMA) + list(self.extra_fields))

    def write(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.rows_per_shard:
            self._flush()

    def close(self) -> list[str]:
        """Writes what is buffered and returns the shard paths, in order."""
        if self._buffer:
            self._flush()
        return self.paths

    def _flush(self) -> None:
        columns = {name: [row.get(name) for row in self._buffer] for name in self.schema.names}
        table = pa.table(columns, schema=self.schema)
        path = os.path.join(self.out_dir, f"part-{len(self.paths):05d}.parquet")
        pq.write_table(table, path, row_group_size=len(self._buffer), compression="snappy")
        self.paths.append(path)
        self.rows_written += len(self._buffer)
        self._buffer = []


def write_manifest(out_dir: str, manifest: dict[str, Any]) -> str:
    """Writes `dataset.json` (sorted keys, no timestamps, so it is reproducible)."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    with open(path, "w") as f:
        json.dump({"format": FORMAT_VERSION, **manifest}, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def read_manifest(data_dir: str) -> dict[str, Any]:
    path = os.path.join(data_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: no {MANIFEST_NAME}; expected a directory written by `clipsweep data`")
    with open(path) as f:
        return json.load(f)


def resolve_shards(paths: str | Iterable[str]) -> list[str]:
    """Expands directories (recursively) and globs to Parquet files and checks their schema.

    Raises:
        DataFormatError: a path that matches nothing, a directory with no `.parquet` file, or a
            file that lacks a required column or has it with the wrong type.
    """
    files: list[str] = []
    for path in [paths] if isinstance(paths, str) else list(paths):
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
            if not found:
                raise DataFormatError(f"{path}: directory holds no .parquet shard")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            matches = sorted(glob.glob(path))
            if not matches:
                raise DataFormatError(f"{path}: no such shard file or directory")
            files.extend(matches)
    for file in files:
        check_schema(file)
    return files


def check_schema(path: str) -> pa.Schema:
    """Reads a shard's schema (footer only) and checks the required columns and their types."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFormatError(f"{path}: not a readable Parquet file ({e})") from e
    for name, allowed in REQUIRED_COLUMNS.items():
        if name not in schema.names:
            raise DataFormatError(
                f"{path}: missing column {name!r}; a shard needs columns "
                f"{', '.join(REQUIRED_COLUMNS)} (has {', '.join(schema.names)})"
            )
        if schema.field(name).type not in allowed:
            raise DataFormatError(
                f"{path}: column {name!r} has type {schema.field(name).type}; "
                f"expected {' or '.join(str(t) for t in allowed)}"
            )
    return schema
