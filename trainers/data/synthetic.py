"""The embedded default corpus: generated captioned scenes written as shards.

Deterministic: scene i is drawn from `np.random.default_rng([seed, i])`, so the same seed gives
byte-identical shards. A scene goes to the held-out split when a hash of its attribute tuple
falls under `heldout_fraction`, so no attribute combination is in both splits (held-out scenes
are new compositions, not new renderings of training scenes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .render import encode_png, render_scene
from .scenes import ATTRIBUTES, LABEL_NAMES, Scene, captions_for, sample_scene
from .shards import MANIFEST_NAME, ShardWriter, read_manifest, write_manifest
from .tokenizer import train_tokenizer

SPLITS = ("train", "heldout")
ATTRIBUTE_FIELDS = [pa.field(name, pa.string()) for name in ATTRIBUTES]


@dataclass(frozen=True)
class SyntheticCorpus:
    """Where a generated corpus lies and how big each split is."""

    root: str
    shards: dict[str, list[str]]
    rows: dict[str, int]
    tokenizer_dir: str | None

    def split_dir(self, split: str) -> str:
        return os.path.join(self.root, split)


def is_heldout(scene: Scene, seed: int, heldout_fraction: float) -> bool:
    """Stable split of attribute combinations: the same tuple always lands in the same split."""
    digest = hashlib.blake2b(f"{seed}|{scene.key()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < heldout_fraction


def generate_synthetic(
    out_dir: str,
    n: int = 10_000,
    seed: int = 0,
    image_size: int = 64,
    heldout_fraction: float = 0.1,
    rows_per_shard: int = 2048,
    tokenizer: bool = True,
    progress: Callable[[int], None] | None = None,
) -> SyntheticCorpus:
    """Renders `n` scenes into `out_dir/{train,heldout}/part-*.parquet` plus `dataset.json`.

    Args:
        out_dir: output directory (created).
        n: scenes in total, over both splits.
        seed: corpus seed; same seed, same bytes.
        image_size: side of the square images in pixels.
        heldout_fraction: expected share of attribute combinations kept out of training.
        rows_per_shard: rows per Parquet file.
        tokenizer: also train a WordPiece tokenizer on the training captions (`out_dir/tokenizer`).
        progress: called with the number of scenes done since the last call.

    Raises:
        ValueError: a parameter out of range (named in the message).
    """
    if n < 2:
        raise ValueError(f"n={n}; need at least 2 scenes")
    if image_size < 16:
        raise ValueError(f"image_size={image_size}; must be >= 16 pixels")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction}; must be in (0, 1)")
    writers = {
        split: ShardWriter(os.path.join(out_dir, split), rows_per_shard, ATTRIBUTE_FIELDS) for split in SPLITS
    }
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng)
        captions = captions_for(scene, rng)
        split = "heldout" if is_heldout(scene, seed, heldout_fraction) else "train"
        writers[split].write(
            {
                "id": f"syn{seed}-{i:07d}",
                "image": encode_png(render_scene(scene, rng, image_size)),
                "caption": captions[0],
                "captions": captions,
                "label": scene.label,
                **scene.as_dict(),
            }
        )
        if progress is not None and (i + 1) % 256 == 0:
            progress(256)
    if progress is not None and n % 256:
        progress(n % 256)
    shards = {split: writer.close() for split, writer in writers.items()}
    rows = {split: writer.rows_written for split, writer in writers.items()}
    tokenizer_dir = None
    if tokenizer:
        tokenizer_dir = os.path.join(out_dir, "tokenizer")
        train_tokenizer(shards["train"], tokenizer_dir)
    write_manifest(
        out_dir,
        {
            "source": "synthetic",
            "seed": seed,
            "n": n,
            "image_size": image_size,
            "heldout_fraction": heldout_fraction,
            "splits": {s: {"rows": rows[s], "shards": [os.path.relpath(p, out_dir) for p in shards[s]]} for s in SPLITS},
            "attributes": {name: list(values) for name, values in ATTRIBUTES.items()},
            "label_names": list(LABEL_NAMES),
            "tokenizer": "tokenizer" if tokenizer else None,
        },
    )
    return SyntheticCorpus(out_dir, shards, rows, tokenizer_dir)


# Part of the cache key: bump it whenever what a seed generates changes (a scene attribute, the
# renderer, the captions, the split sizes), so a cached corpus of the old generator is never reused.
CORPUS_VERSION = 1


def default_cache_dir() -> str:
    """`$CLIPSWEEP_CACHE`, else `~/.cache/clipsweep`."""
    return os.environ.get("CLIPSWEEP_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "clipsweep"))


def ensure_synthetic(
    cache_dir: str | None = None, n: int = 10_000, seed: int = 0, image_size: int = 64
) -> SyntheticCorpus:
    """The corpus for (n, seed, image_size) of this generator (`CORPUS_VERSION`) under the cache,
    generated on first use.

    Generation writes to a temporary sibling and renames it, so an interrupted run never
    leaves a half-written corpus that a later run would trust.
    """
    root = os.path.join(cache_dir or default_cache_dir(), f"synthetic-v{CORPUS_VERSION}-n{n}-s{seed}-px{image_size}")
    if not os.path.isfile(os.path.join(root, MANIFEST_NAME)):
        tmp = f"{root}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        generate_synthetic(tmp, n=n, seed=seed, image_size=image_size)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    manifest = read_manifest(root)
    shards = {s: [os.path.join(root, p) for p in manifest["splits"][s]["shards"]] for s in SPLITS}
    rows = {s: manifest["splits"][s]["rows"] for s in SPLITS}
    return SyntheticCorpus(root, shards, rows, os.path.join(root, manifest["tokenizer"]))
