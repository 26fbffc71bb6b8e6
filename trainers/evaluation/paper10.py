"""The `paper10` suite: paper A's 8 zero-shot classification sets and 2 retrieval sets, on real data.

Primary metrics as docs/methods.md: acc@1, except mean per-class recall for FGVC-Aircraft, Pets and
Flowers-102; retrieval the mean of the two R@1. Tiers: `cheap` is a fixed, seeded,
class-stratified subset of each classification test split (500 items by default) and a seeded
subset of the retrieval test images (200 by default, all captions of each); `full` is the whole
test split. Images are decoded by a DataLoader (workers for large splits) and embedded once per
dataset per call; every task of a dataset shares them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.tokenizer import load_tokenizer
from ..data.transforms import square_pixels
from .datasets import DATASETS, ClassificationSet, RetrievalSet, check_images, check_root, load_dataset, prompts
from .metrics import ItemScores
from .tasks import encode_pixels, evaluating, score_retrieval, score_zero_shot, text_encoder

if TYPE_CHECKING:
    from .settings import SuiteSettings

_SMALL = 256  # below this many images, decoding in the calling process beats starting workers


def stratified_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of `size` items whose class proportions follow `labels` (largest remainders).

    Every class keeps floor(size * n_c / N) items, the leftover slots go to the classes with the
    largest fractional parts; which items is a seeded draw. All items when size >= N.
    """
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = size * counts / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class TierSet:
    """One dataset's items in a tier: the loaded split and the indices of the items kept."""

    data: ClassificationSet | RetrievalSet
    indices: np.ndarray


def load_paper10(settings: SuiteSettings, tier: str) -> dict[str, TierSet]:
    """Every configured dataset's test split restricted to `tier` (cheap or full).

    Raises:
        ValueError: an unknown tier, dataset or a root that does not hold its dataset.
    """
    if tier not in ("cheap", "full"):
        raise ValueError(f"tier={tier!r}; allowed: cheap, full")
    sets = {}
    for name in DATASETS:  # the suite's own order, whatever order the spec lists roots in
        if name not in settings.roots:
            continue
        data = load_dataset(name, settings.roots[name])
        if tier == "full":
            indices = np.arange(len(data))
        elif isinstance(data, ClassificationSet):
            indices = stratified_subset(data.labels, settings.cheap_size, settings.seed)
        else:
            rng = np.random.default_rng(settings.seed)
            indices = np.sort(rng.permutation(len(data))[: settings.cheap_retrieval_size])
        sets[name] = TierSet(data, indices)
    return sets


def chance_levels(settings: SuiteSettings, tier: str) -> dict[str, float]:
    """Expected primary metric of a random model on each configured dataset: 1 / classes for
    accuracy and for mean per-class recall (2 classes: PCam 0.5); 1 / images for retrieval R@1
    (one image of the tier is right for a caption, and a right caption is 1 image's 5 of 5N)."""
    levels = {}
    for name, root in settings.roots.items():
        if DATASETS[name].retrieval:
            n = len(load_dataset(name, root))
            levels[name] = 1 / (min(n, settings.cheap_retrieval_size) if tier == "cheap" else n)
        else:
            levels[name] = 1 / len(prompts()[name]["classes"])
    return levels


class _Pixels(Dataset):
    """Items of a split as uint8 (3, S, S) squares: CLIP's resize-short-side + centre crop."""

    def __init__(self, data: ClassificationSet | RetrievalSet, indices: np.ndarray, size: int) -> None:
        self.data, self.indices, self.size = data, indices, size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        # square_pixels returns a read-only transposed view of PIL's buffer: copy it contiguous.
        return torch.from_numpy(np.ascontiguousarray(square_pixels(self.data.image(int(self.indices[i])), self.size)))


def embed_images(
    model: torch.nn.Module, tier_set: TierSet, image_size: int, device: torch.device, batch_size: int = 256,
    num_workers: int | None = None,
) -> np.ndarray:
    """(N, D) image embeddings of a tier's items, decoded in a DataLoader."""
    if num_workers is None:
        num_workers = 0 if len(tier_set.indices) < _SMALL else min(4, os.cpu_count() or 1)
    loader = DataLoader(
        _Pixels(tier_set.data, tier_set.indices, image_size), batch_size=batch_size, num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    return encode_pixels(model, loader, device)


def score_paper10(
    model: torch.nn.Module,
    sets: dict[str, TierSet],
    tokenizer,
    image_size: int,
    max_length: int,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
    """Metrics (with `primary`) and per-item primary scores of each configured dataset."""
    device = torch.device(device)
    encode = text_encoder(model, tokenizer, max_length, device, batch_size)
    results: dict[str, dict[str, float]] = {}
    items: dict[str, ItemScores] = {}
    with evaluating(model):
        for name, tier_set in sets.items():
            image = embed_images(model, tier_set, image_size, device, batch_size)
            data = tier_set.data
            if isinstance(data, ClassificationSet):
                results[name], items[name] = score_zero_shot(
                    image, data.labels[tier_set.indices], data.classes, data.templates, encode,
                    primary=DATASETS[name].primary, image_metrics=True,
                )
            else:
                captions = [data.captions[i] for i in tier_set.indices]
                results[name], items[name] = score_retrieval(image, captions, encode)
    return results, items


class Paper10:
    """The `paper10` entry of `suites.SUITES`: the configured datasets of the ten, from local roots."""

    def check(self, settings: SuiteSettings, images: bool) -> None:
        if not settings.roots:
            raise ValueError(f"suite.roots is empty; paper10 needs at least one of: {', '.join(DATASETS)}")
        for name, root in settings.roots.items():
            check_root(name, root)
            if images:
                check_images(name, root)

    def skipped(self, settings: SuiteSettings) -> list[str]:
        return [name for name in DATASETS if name not in settings.roots]

    def load(self, settings: SuiteSettings, tier: str, image_size: int) -> Any:
        return load_paper10(settings, tier)

    def score(
        self, data: Any, model: torch.nn.Module, tokenizer_dir: str, max_length: int, image_size: int, device: torch.device | str
    ) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
        return score_paper10(model, data, load_tokenizer(tokenizer_dir), image_size, max_length, device)

    def chance_levels(self, settings: SuiteSettings, tier: str) -> dict[str, float]:
        return chance_levels(settings, tier)
