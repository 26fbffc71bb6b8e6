"""Sources -> Ray Dataset -> decoded, augmented, tokenized torch batches.

Works the same on the driver (`build_dataset(...).iter_torch_batches`) and inside a Ray Train
worker (`torch_batches(ray.train.get_dataset_shard("train"), ...)`): decoding and tokenizing
run as Ray Data tasks in `map_batches`, so they scale with the cluster, not the trainer process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import ray
import torch
from PIL import Image

from ..seeding import torch_generator
from .sources import Source, read_source, resolve_source, source_size
from .tokenizer import load_tokenizer
from .transforms import decode_image, drop_tokens, jitter_colours, normalize, random_resized_crops, square_pixels

MATERIALIZE_BYTES = 512 * 2**20  # shards up to this size are read once and kept in memory
DECODED_CACHE_BYTES = 2**30  # decoded training pixels up to this size are cached (about 87k items at 64 px)
NO_LABEL = -1  # label value of items whose source has none


@dataclass(frozen=True)
class Preprocess:
    """Batch function for `map_batches`: {id, image bytes, caption(s), label} -> model inputs.

    Two halves: `decode` is deterministic (pixels as a uint8 square, the caption list, the
    label), so a small training set is decoded once and cached (`build_train_dataset`);
    `augment` draws what changes every epoch (crops, caption, views) on whole batches in torch.
    Called as a whole, it is `augment(decode(batch))`.

    Output columns: `image` uint8 (B, 3, S, S) (`torch_batches` normalises it), `input_ids` and
    `attention_mask` int64 (B, max_length), `label` int64 (B,) with -1 where missing, `id` str
    (B,). With `views`, also paper C's second views: `image_view` (jittered, cropped harder) and
    `view_input_ids` / `view_attention_mask` (another caption of the item, or, for an item with
    one caption, that caption with tokens deleted at rate `token_drop`).

    Args:
        tokenizer_dir: local directory of a saved tokenizer.
        image_size: side S of the output images.
        train: augment images and draw a random caption per item; else the centre square and
            the first caption (deterministic, for evaluation).
        max_length: token length after padding/truncation.
        hflip: random horizontal flip in training (see `random_resized_crops`).
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
        """Only the decoded pixels: (B, 3, S, S) uint8 centre squares of the `image` column."""
        return np.stack([square_pixels(decode_image(d), self.image_size) for d in batch["image"]])

    def decode(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The deterministic half: `id`, `image` (centre squares), `label`, `caption_tokens`
        (per item, the token ids of each of its captions, int32 (n_captions, max_length)) and
        `skip`: "" or why the item is skipped (`sources.SKIP_REASONS`; its pixels are zeros).
        A source's own skips pass through; an image that does not decode is one."""
        options = self._caption_options(batch)
        skip = [str(s) for s in batch["skip"]] if "skip" in batch else [""] * len(options)
        pixels = np.zeros((len(options), 3, self.image_size, self.image_size), dtype=np.uint8)
        for row, data in enumerate(batch["image"]):
            if not skip[row]:
                try:
                    pixels[row] = square_pixels(decode_image(data), self.image_size)
                except (OSError, ValueError, Image.DecompressionBombError):  # PIL's "cannot identify", "truncated"
                    skip[row] = "undecodable_image"
        ids, _ = self._tokenize([c for o in options for c in o])
        ends = np.cumsum([len(o) for o in options])
        tokens = np.empty(len(options), dtype=object)
        for row, item in enumerate(np.split(ids.astype(np.int32), ends[:-1])):  # ragged: one array per item
            tokens[row] = item
        return {
            "id": np.asarray(batch["id"], dtype=object),
            "image": pixels,
            "caption_tokens": tokens,
            "label": self._labels(batch, len(options)),
            "skip": np.asarray(skip, dtype=object),
        }

    def augment(self, decoded: dict[str, np.ndarray], rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """The random half, on a batch of `decode`'s output: crops, caption draws, views.

        Args:
            decoded: a batch of `decode`'s output.
            rng: where every draw comes from (a trial passes its seeded stream); None: fresh
                entropy.
        """
        rng = rng if rng is not None else np.random.default_rng()
        tokens = decoded["caption_tokens"]
        counts = np.array([len(t) for t in tokens])
        chosen = rng.integers(counts) if self.train else np.zeros_like(counts)
        input_ids, attention_mask = self._pick(tokens, chosen)
        pixels = torch.from_numpy(np.require(decoded["image"], requirements="CW"))
        out = {
            "id": decoded["id"],
            "image": random_resized_crops(pixels, self.image_size, rng, hflip=self.hflip).numpy() if self.train else decoded["image"],
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "label": decoded["label"],
        }
        if self.views:
            view = random_resized_crops(jitter_colours(pixels, rng), self.image_size, rng, scale=(0.5, 1.0), hflip=self.hflip)
            out["image_view"] = view.numpy()
            # Another caption where there is one: shift the drawn index by 1..n-1.
            others = (chosen + 1 + rng.integers(np.maximum(counts - 1, 1))) % counts
            view_ids, view_mask = self._pick(tokens, others)
            dropped_ids, dropped_mask = drop_tokens(
                torch.from_numpy(view_ids), torch.from_numpy(view_mask), self.token_drop, torch_generator(rng)
            )
            single = (counts == 1)[:, None]
            out["view_input_ids"] = np.where(single, dropped_ids.numpy(), view_ids)
            out["view_attention_mask"] = np.where(single, dropped_mask.numpy(), view_mask)
        return out

    def _pick(self, tokens: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row `chosen[i]` of each item's caption tokens: (input_ids, attention_mask) int64."""
        input_ids = np.stack([t[c] for t, c in zip(tokens, chosen)]).astype(np.int64)
        return input_ids, (input_ids != load_tokenizer(self.tokenizer_dir).pad_token_id).astype(np.int64)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.augment(self.decode(batch))

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


def read_shards(paths: str | Iterable[str] | Source, rows_per_block: int = 1024) -> ray.data.Dataset:
    """Reads a source (`sources.py`: clipsweep shards, WebDataset tars, img2dataset Parquet)
    with Ray Data, after checking it.

    Blocks are cut to `rows_per_block` rows (streaming, no shuffle) so that decoding runs as
    many parallel tasks: the readers otherwise hand a few small files over as one block, which
    one task would decode alone.

    Raises:
        DataFormatError: a path that does not exist or a shard without the required columns
            (raised on the driver, before any Ray task runs).
    """
    source = paths if isinstance(paths, Source) else resolve_source(paths)
    dataset = read_source(source).repartition(target_num_rows_per_block=rows_per_block)
    # Rows in file order, every run: a streamed training set's order (and so a trial's numbers)
    # derives from it. Without this the kept copy below holds its blocks in the order the read
    # tasks finished, which differs between runs.
    dataset.context.execution_options.preserve_order = True
    if sum(_size(f) for f in source.files) <= MATERIALIZE_BYTES:
        # Small data: keep the encoded rows in the object store, so each epoch skips listing
        # and reading the files and only decodes (measured: about 1.5 s less per epoch here).
        dataset = dataset.materialize()
    return dataset


def _size(path: str) -> int:
    return os.path.getsize(path) if "://" not in path else fsspec.core.url_to_fs(path)[0].size(path)


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


def streams(samples: int, image_size: int, stream: bool = False) -> bool:
    """Whether a training set of `samples` items streams (decoded every epoch, each rank reading
    its own files: `rank_stream`) rather than being decoded once and held whole: when asked
    (`data.stream`) or when its decoded pixels exceed `DECODED_CACHE_BYTES`."""
    return stream or samples * 3 * image_size**2 > DECODED_CACHE_BYTES


def build_train_dataset(
    paths: str | Iterable[str] | Source,
    preprocess: Preprocess,
    num_cpus: float = 1.0,
    rows_per_block: int = 1024,
    stream: bool = False,
) -> tuple[ray.data.Dataset, bool]:
    """The decoded training set (`preprocess.decode` as Ray Data tasks), and whether it is
    small enough for each worker to hold whole (`epochs.InMemoryTrainingSet`); `stream` streams
    it whatever its size (`data.stream`, the path of sets too large to hold).

    The consumer augments every batch itself (`preprocess.augment` with the trial's seeded
    stream), so no random draw happens in a Ray Data task, whose order and placement vary.
    When the decoded pixels fit in `DECODED_CACHE_BYTES`, the set is decoded once into the
    object store: decoding every epoch in Ray Data tasks beside the trainer cost W = 1 about 15%
    of its speed here, more than the work's own CPU share (the trainer's threads wait on the
    core the task holds). Larger sets are decoded as they stream, every epoch.
    """
    source = paths if isinstance(paths, Source) else resolve_source(paths)
    decoded = read_shards(source, rows_per_block).map_batches(
        preprocess.decode, batch_size=rows_per_block, batch_format="numpy", num_cpus=num_cpus
    )
    if streams(source_size(source).samples, preprocess.image_size, stream):
        return decoded, False
    return decoded.materialize(), True


def rank_files(files: Sequence[str], rank: int, world: int) -> list[str]:
    """The shard files rank `rank` of `world` streams: every world-th, from position `rank`
    (open_clip's split of WebDataset shards by node and worker). Each rank reads only its own,
    in order, so its items are the same every run."""
    return list(files[rank::world])


def rank_stream(source: Source, preprocess: Preprocess, rank: int, world: int) -> ray.data.Dataset:
    """This rank's part of a streamed training set, decoded as it streams (`rank_files`)."""
    mine = Source(source.kind, tuple(rank_files(source.files, rank, world)), source.caption_field)
    return build_train_dataset(mine, preprocess, stream=True)[0]


def to_torch(batch: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, Any]:
    """Numeric columns to tensors on `device`, images normalised there; `id` stays a list of str."""
    out: dict[str, Any] = {"id": list(batch["id"])}
    pin = torch.device(device).type == "cuda"  # page-locked host memory: the copy runs asynchronously
    for key, value in batch.items():
        if key != "id":
            # Batches from the object store are read-only views; torch needs writable memory.
            tensor = torch.from_numpy(np.require(value, requirements="CW"))
            out[key] = (tensor.pin_memory() if pin else tensor).to(device, non_blocking=True)
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
    augment: Preprocess | None = None,
    rng: np.random.Generator | None = None,
) -> Iterator[dict[str, Any]]:
    """Iterates preprocessed batches as torch tensors on `device`, images CLIP-normalised.

    Accepts a Dataset (driver) or the DataIterator that `ray.train.get_dataset_shard` returns
    (worker). One call is one pass (one epoch) over the data. `augment`: the `Preprocess`
    whose random half still has to run on each (decoded) batch, as `build_train_dataset` says,
    drawing from `rng`.
    """
    # The augmentation runs here, in the consumer's thread: in Ray Data's prefetch threads it
    # overlapped the step but competed with its intra-op threads (W = 1: 740 -> 672 samples/s).
    for batch in data.iter_batches(
        batch_size=batch_size, batch_format="numpy", drop_last=drop_last, prefetch_batches=prefetch_batches
    ):
        yield to_torch(augment.augment(batch, rng) if augment else batch, device)
