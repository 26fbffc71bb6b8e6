"""clipsweep shards written as img2dataset writes corpora: WebDataset tar shards or Parquet.

For handing a corpus to tools that read those layouts (open_clip's `--train-data`), and for
the tests and benchmarks of the readers in `sources.py`, which read them back. A sample is a
dict `{key, image, caption, label}`; a member whose value is None is left out (as a broken
download leaves it).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .shards import resolve_shards

IMG2DATASET_SCHEMA = pa.schema(
    [("key", pa.string()), ("caption", pa.string()), ("jpg", pa.binary()), ("url", pa.string()),
     ("width", pa.int64()), ("height", pa.int64()), ("status", pa.string()), ("error_message", pa.string())]
)  # fmt: skip


def shard_samples(paths: str | Sequence[str]) -> Iterator[dict]:
    """The rows of clipsweep shards as samples: a 9-digit key (img2dataset's), the image bytes
    as stored, the first caption, the label."""
    index = 0
    for path in resolve_shards(paths):
        for row in pq.read_table(path, columns=["image", "caption", "label"]).to_pylist():
            yield {"key": f"{index:09d}", "image": row["image"], "caption": row["caption"], "label": row["label"]}
            index += 1


def _chunks(samples: Sequence[dict], shards: int) -> list[Sequence[dict]]:
    size = -(-len(samples) // shards)
    return [samples[i * size : (i + 1) * size] for i in range(shards)]


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0  # no timestamps: the same samples give the same bytes
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(
    samples: Sequence[dict], folder: str, shards: int, image_extension: str = "jpg", caption_in_json: bool = False
) -> list[str]:
    """`{00000..}.tar` in `folder`: per sample `{key}.{image_extension}`, `{key}.txt` (or, with
    `caption_in_json`, the field `caption` of `{key}.json` instead), `{key}.json` and `{key}.cls`
    when it has a label."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for number, chunk in enumerate(_chunks(samples, shards)):
        path = os.path.join(folder, f"{number:05d}.tar")
        with tarfile.open(path, "w") as tar:
            for s in chunk:
                if s["image"] is not None:
                    _member(tar, f"{s['key']}.{image_extension}", s["image"])
                if s["caption"] is not None and not caption_in_json:
                    _member(tar, f"{s['key']}.txt", s["caption"].encode())
                fields = {"key": s["key"], **({"caption": s["caption"]} if caption_in_json and s["caption"] is not None else {})}
                _member(tar, f"{s['key']}.json", json.dumps(fields).encode())
                if s.get("label") is not None:
                    _member(tar, f"{s['key']}.cls", str(s["label"]).encode())
        paths.append(path)
    return paths


def write_img2dataset_parquet(samples: Sequence[dict], folder: str, shards: int) -> list[str]:
    """`{00000..}.parquet` in `folder` with img2dataset's columns (`key`, `caption`, `jpg`, ...)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for number, chunk in enumerate(_chunks(samples, shards)):
        columns = {
            "key": [s["key"] for s in chunk],
            "caption": [s["caption"] for s in chunk],
            "jpg": [s["image"] for s in chunk],
            "url": [f"https://example.org/{s['key']}.jpg" for s in chunk],
            "width": [None] * len(chunk),
            "height": [None] * len(chunk),
            "status": ["success"] * len(chunk),
            "error_message": [None] * len(chunk),
        }
        path = os.path.join(folder, f"{number:05d}.parquet")
        pq.write_table(pa.table(columns, schema=IMG2DATASET_SCHEMA), path)
        paths.append(path)
    return paths
