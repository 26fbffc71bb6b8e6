"""Shards -> Ray Dataset -> decoded, augmented, tokenized torch batches.

Works the same on the driver (`build_dataset(...).iter_torch_batches`) and inside a Ray Train
worker (`torch_batches(ray.train.get_dataset_shard("train"), ...)`): decoding and tokenizing
run as Ray Data tasks in `map_batches`, so they scale with the cluster, not the trainer process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import ray
import torch

from .shards import resolve_shards
from .tokenizer import load_tokenizer
from .transforms import crop_image, decode_image, drop_tokens, image_view, normalize

OPTIONAL_COLUMNS = ("captions", "label")
MATERIALIZE_BYTES = 512 * 2**20  # shards up to this size are read once and kept in memory
NO_LABEL = -1  # label value of items whose source has none


@dataclass(frozen=True)
class Preprocess:
    """Batch function for `map_batches`: {id, image bytes, caption(s), label} -> model inputs.

    Output columns: `image` uint8 (B, 3, S, S) (`torch_batches` normalises it), `input_ids` and
    `attention_mask` int64 (B, max_length), `label` int64 (B,) with -1 where missing, `id` str
    (B,). With `views`, also paper C's second views: `image_view` (jittered, cropped harder) and
    `view_input_ids` / `view_attention_mask` (another caption of the item, or, for an item with
    one caption, that caption with tokens deleted at rate `token_drop`).

    Args:
        tokenizer_dir: local directory of a saved tokenizer.
        image_size: side S of the output images.
        train: augment images and draw a random caption per item; else centre crop and the
            first caption (deterministic, for evaluation).
        max_length: token length after padding/truncation.
        hflip: random horizontal flip in training (see `crop_image`).
        views: also emit the second image and text views.
        token_drop: deletion rate of the text view of single-caption items.
    """

    tokenizer_dir: str
    image_size: int = 64
    train: bool = True
    max_length: int = 32
    hflip: bool = False
    views: bool = False
    token_drop: float = 0.1

    def images(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Only the image part: (B, 3, S, S) uint8 crops of the `image` column."""
        return np.stack([crop_image(decode_image(d), self.image_size, self.train, hflip=self.hflip) for d in batch["image"]])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        decoded = [decode_image(data) for data in batch["image"]]
        options = self._caption_options(batch)
        rng = np.random.default_rng()  # fresh entropy: new crops and caption draws every epoch
        chosen = [int(rng.integers(len(o))) if self.train else 0 for o in options]
        input_ids, attention_mask = self._tokenize([o[i] for o, i in zip(options, chosen)])
        out = {
            "id": np.asarray(batch["id"], dtype=object),
            "image": np.stack([crop_image(im, self.image_size, self.train, hflip=self.hflip, rng=rng) for im in decoded]),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "label": self._labels(batch, len(decoded)),
        }
        if self.views:
            out["image_view"] = np.stack([image_view(im, self.image_size, hflip=self.hflip, rng=rng) for im in decoded])
            # Another caption where there is one: shift the drawn index by 1..n-1.
            others = [(i + 1 + int(rng.integers(len(o) - 1))) % len(o) if len(o) > 1 else i for o, i in zip(options, chosen)]
            view_ids, view_mask = self._tokenize([o[i] for o, i in zip(options, others)])
            dropped_ids, dropped_mask = drop_tokens(torch.from_numpy(view_ids), torch.from_numpy(view_mask), self.token_drop)
            single = np.array([len(o) == 1 for o in options])
            out["view_input_ids"] = np.where(single[:, None], dropped_ids.numpy(), view_ids)
            out["view_attention_mask"] = np.where(single[:, None], dropped_mask.numpy(), view_mask)
        return out

    def _caption_options(self, batch: dict[str, np.ndarray]) -> list[list[str]]:
        if "captions" not in batch:
            return [[str(c)] for c in batch["caption"]]
        return [[str(c) for c in cs] if len(cs) else [str(first)] for cs, first in zip(batch["captions"], batch["caption"])]

    def _tokenize(self, captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        tokens = load_tokenizer(self.tokenizer_dir)(
            captions, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="np"
        )
        return tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64)

    @staticmethod
    def _labels(batch: dict[str, np.ndarray], n: int) -> np.ndarray:
        if "label" not in batch:
            return np.full(n, NO_LABEL, dtype=np.int64)
        # Nullable column: Arrow nulls arrive as None or NaN.
        return np.array([NO_LABEL if v is None or v != v else int(v) for v in batch["label"]], dtype=np.int64)


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
    dataset = ray.data.read_parquet(files, columns=columns).repartition(target_num_rows_per_block=rows_per_block)
    if sum(os.path.getsize(f) for f in files) <= MATERIALIZE_BYTES:
        # Small data: keep the encoded rows in the object store, so each epoch skips listing
        # and reading the files and only decodes (measured: about 1.5 s less per epoch here).
        dataset = dataset.materialize()
    return dataset


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
    for key in ("image", "image_view"):
        if key in out:
            out[key] = normalize(out[key])
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
