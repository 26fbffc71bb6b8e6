"""`clipsweep demo`: the embedded default end to end, as far as the project goes today.

Generates (or reuses) the synthetic corpus, streams one epoch of it through the Ray Data
pipeline that trials use, and reports what came out. The sweep issue turns this into the demo
sweep over `search_spaces/default.yaml`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray

from clipsweep.trainers.data.loading import Preprocess, build_dataset, torch_batches
from clipsweep.trainers.data.synthetic import SyntheticCorpus, ensure_synthetic


@dataclass(frozen=True)
class DemoReport:
    """What one pass over the demo corpus produced."""

    corpus: SyntheticCorpus
    items: int
    batches: int
    image_shape: tuple[int, ...]
    token_shape: tuple[int, ...]
    seconds: float


def run_demo(cache_dir: str | None = None, n: int = 10_000, batch_size: int = 256) -> DemoReport:
    """Prepares the default corpus and reads its training split once through Ray Data."""
    corpus = ensure_synthetic(cache_dir, n=n)
    if not ray.is_initialized():
        ray.init(configure_logging=False, log_to_driver=False)
    dataset = build_dataset(corpus.split_dir("train"), Preprocess(corpus.tokenizer_dir))
    start = time.perf_counter()
    items = batches = 0
    image_shape = token_shape = ()
    for batch in torch_batches(dataset, batch_size):
        items += len(batch["id"])
        batches += 1
        image_shape, token_shape = tuple(batch["image"].shape), tuple(batch["input_ids"].shape)
    return DemoReport(corpus, items, batches, image_shape, token_shape, time.perf_counter() - start)
