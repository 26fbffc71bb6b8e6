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
from .transforms import crop_image, decode_image, normalize

OPTIONAL_COLUMNS = ("captions", "label")
NO_LABEL = -1  # label value of items whose source has none


@dataclass(frozen=True)
class Preprocess:
    """Batch function for `map_batches`: {id, image bytes, caption(s), label} -> model inputs.

    Output columns: `image` uint8 (B, 3, S, S) (`torch_batches` normalises it), `input_ids` and `attention_mask` int64
    (B, max_length), `label` int64 (B,) with -1 where missing, `id` str (B,).

    Args:
        tokenizer_dir: local directory of a saved tokenizer.
        image_size: side S of the output images.
        train: augment images and draw a random caption per item; else centre crop and the
            first caption (deterministic, for evaluation).
        max_length: token length after padding/truncation.
        hflip: random horizontal flip in training (see `crop_image`).
    """

    tokenizer_dir: str
    image_size: int = 64
    train: bool = True
    max_length: int = 32
    hflip: bool = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = np.stack(
            [crop_image(decode_image(data), self.image_size, self.train, hflip=self.hflip) for data in batch["image"]]
        )
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


def read_shards(paths: str | Iterable[str], rows_per_block: int = 1024) -> ray.data.Dataset:
    """Reads shard files or directories with `ray.data.read_parquet`, after checking them.

    Blocks are cut to `rows_per_block` rows (streaming, no shuffle) so that decoding runs as
    many parallel tasks: the Parquet reader otherwise hands a few small files over as one block,
    which one task would decode alone.

    Raises:
        DataFormatError: a path that does not exist or a shard without the required columns
            (raised on the driver, before any Ray task runs).
    """
    files = resolve_shards(paths)
    present = set(pq.read_schema(files[0]).names)
    columns = ["id", "image", "caption"] + [c for c in OPTIONAL_COLUMNS if c in present]
    return ray.data.read_parquet(files, columns=columns).repartition(target_num_rows_per_block=rows_per_block)


def build_dataset(
    paths: str | Iterable[str],
    preprocess: Preprocess,
    num_cpus: float = 1.0,
    rows_per_block: int = 1024,
) -> ray.data.Dataset:
    """`read_shards` followed by `preprocess` as Ray Data tasks of `num_cpus` each."""
    return read_shards(paths, rows_per_block).map_batches(
        preprocess, batch_size=rows_per_block, batch_format="numpy", num_cpus=num_cpus
    )


def to_torch(batch: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, Any]:
    """Numeric columns to tensors on `device`, images normalised there; `id` stays a list of str."""
    out: dict[str, Any] = {"id": list(batch["id"])}
    for key, value in batch.items():
        if key != "id":
            # Batches from the object store are read-only views; torch needs writable memory.
            out[key] = torch.from_numpy(np.require(value, requirements="CW")).to(device, non_blocking=True)
    out["image"] = normalize(out["image"])
    return out


def torch_batches(
    data: ray.data.Dataset | ray.data.DataIterator,
    batch_size: int,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
    prefetch_batches: int = 2,
) -> Iterator[dict[str, Any]]:
    """Iterates preprocessed batches as torch tensors on `device`, images CLIP-normalised.

    Accepts a Dataset (driver) or the DataIterator that `ray.train.get_dataset_shard` returns
    (worker). One call is one pass (one epoch) over the data.
    """
    for batch in data.iter_batches(
        batch_size=batch_size, batch_format="numpy", drop_last=drop_last, prefetch_batches=prefetch_batches
    ):
        yield to_torch(batch, device)
