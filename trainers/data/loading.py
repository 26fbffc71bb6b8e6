"""Shards -> Ray Dataset -> decoded, augmented, tokenized torch batches.

Works the same on the driver (`build_dataset(...).iter_torch_batches`) and inside a Ray Train
worker (`torch_batches(ray.train.get_dataset_shard("train"), ...)`): decoding and tokenizing
run as Ray Data tasks in `map_batches`, so they scale with the cluster, not the trainer process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import ray
import torch

from .shards import resolve_shards
from .tokenizer import load_tokenizer
from .transforms import decode_image, image_transform

OPTIONAL_COLUMNS = ("captions", "label")
NO_LABEL = -1  # label value of items whose source has none


@dataclass(frozen=True)
class Preprocess:
    """Batch function for `map_batches`: {id, image bytes, caption(s), label} -> model inputs.

    Output columns: `image` float32 (B, 3, S, S), `input_ids` and `attention_mask` int64
    (B, max_length), `label` int64 (B,) with -1 where missing, `id` str (B,).

    Args:
        tokenizer_dir: local directory of a saved tokenizer.
        image_size: side S of the output images.
        train: augment images and draw a random caption per item; else centre crop and the
            first caption (deterministic, for evaluation).
        max_length: token length after padding/truncation.
        hflip: random horizontal flip in training (see `image_transform`).
    """

    tokenizer_dir: str
    image_size: int = 64
    train: bool = True
    max_length: int = 32
    hflip: bool = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        transform = image_transform(self.image_size, self.train, hflip=self.hflip)
        images = np.stack([transform(decode_image(data)).numpy() for data in batch["image"]])
        tokens = load_tokenizer(self.tokenizer_dir)(
            self._pick_captions(batch),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="np",
        )
        labels = batch.get("label")
        if labels is None:
            labels = np.full(len(images), NO_LABEL, dtype=np.int64)
        else:  # nullable column: Arrow nulls arrive as NaN or None
            labels = np.array([NO_LABEL if v is None or v != v else int(v) for v in labels], dtype=np.int64)
        return {
            "id": np.asarray(batch["id"], dtype=object),
            "image": images,
            "input_ids": tokens["input_ids"].astype(np.int64),
            "attention_mask": tokens["attention_mask"].astype(np.int64),
            "label": labels,
        }

    def _pick_captions(self, batch: dict[str, np.ndarray]) -> list[str]:
        if not self.train or "captions" not in batch:
            return [str(c) for c in batch["caption"]]
        rng = np.random.default_rng()  # fresh entropy: a new caption draw every epoch
        return [
            str(options[rng.integers(len(options))]) if len(options) else str(first)
            for options, first in zip(batch["captions"], batch["caption"])
        ]


def read_shards(paths: str | Iterable[str]) -> ray.data.Dataset:
    """Reads shard files or directories with `ray.data.read_parquet`, after checking them.

    Raises:
        DataFormatError: a path that does not exist or a shard without the required columns
            (raised on the driver, before any Ray task runs).
    """
    files = resolve_shards(paths)
    present = set(pq.read_schema(files[0]).names)
    columns = ["id", "image", "caption"] + [c for c in OPTIONAL_COLUMNS if c in present]
    return ray.data.read_parquet(files, columns=columns)


def build_dataset(
    paths: str | Iterable[str],
    preprocess: Preprocess,
    num_cpus: float = 1.0,
    batch_size: int = 256,
) -> ray.data.Dataset:
    """`read_shards` followed by `preprocess` as Ray Data tasks of `num_cpus` each."""
    return read_shards(paths).map_batches(preprocess, batch_size=batch_size, batch_format="numpy", num_cpus=num_cpus)


def to_torch(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Numeric columns to tensors; `id` stays a list of str (torch has no string tensors)."""
    # Batches from the object store are read-only views; torch needs writable memory.
    return {k: (list(v) if k == "id" else torch.from_numpy(np.require(v, requirements="CW"))) for k, v in batch.items()}


def torch_batches(
    data: ray.data.Dataset | ray.data.DataIterator,
    batch_size: int,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
    prefetch_batches: int = 2,
) -> Iterator[dict[str, Any]]:
    """Iterates preprocessed batches as torch tensors on `device`.

    Accepts a Dataset (driver) or the DataIterator that `ray.train.get_dataset_shard` returns
    (worker). One call is one pass (one epoch) over the data.
    """
    for batch in data.iter_batches(
        batch_size=batch_size, batch_format="numpy", drop_last=drop_last, prefetch_batches=prefetch_batches
    ):
        out = to_torch(batch)
        yield {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
