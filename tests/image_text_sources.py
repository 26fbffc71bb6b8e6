"""The small synthetic corpus as img2dataset leaves corpora on disk, broken samples included:
JPEG images (img2dataset re-encodes), WebDataset tars and img2dataset Parquet
(`trainers/data/exports.py` writes the real formats)."""

from __future__ import annotations

import io

from PIL import Image

from clipsweep.trainers.data import exports
from clipsweep.trainers.data.synthetic import SyntheticCorpus


def corpus_samples(corpus: SyntheticCorpus) -> list[dict]:
    """The corpus' training split as img2dataset samples, each image re-encoded as JPEG."""
    samples = list(exports.shard_samples(corpus.split_dir("train")))
    for s in samples:
        out = io.BytesIO()
        Image.open(io.BytesIO(s["image"])).convert("RGB").save(out, format="JPEG", quality=90)
        s["image"] = out.getvalue()
    return samples


def broken(samples: list[dict], faults: dict[int, str]) -> list[dict]:
    """A copy with sample i broken as `faults[i]` says: "no_caption", "no_image" or
    "undecodable_image" (bytes that are not an image)."""
    out = [dict(s) for s in samples]
    for i, fault in faults.items():
        field, value = {"no_caption": ("caption", None), "no_image": ("image", None)}.get(fault, ("image", b"not a jpeg"))
        out[i][field] = value
    return out


def write_tars(samples: list[dict], folder: str, shards: int, faults: dict[int, str] | None = None, **options) -> list[str]:
    return exports.write_webdataset(broken(samples, faults or {}), folder, shards, **options)


def write_img2dataset_parquet(samples: list[dict], folder: str, shards: int, faults: dict[int, str] | None = None) -> list[str]:
    return exports.write_img2dataset_parquet(broken(samples, faults or {}), folder, shards)


def truncate(path: str, keep_fraction: float) -> None:
    """Cuts a file to `keep_fraction` of its bytes, as an interrupted copy leaves it."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep_fraction)])
