"""The two task shapes both suites are made of: zero-shot classification and image-text retrieval.

A task takes image embeddings already computed (once per dataset and tier, shared by its tasks)
and a text encoder, and returns its metrics (with `primary`) and the primary metric per item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..data.transforms import normalize
from .metrics import ItemScores, class_embeddings, image_retrieval_r1, knn_accuracy, retrieval, zero_shot

TextEncoder = Callable[[list[str]], np.ndarray]


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode inside (BatchNorm statistics frozen), the caller's mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def encode_pixels(model: torch.nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> np.ndarray:
    """(N, D) embeddings of uint8 (B, 3, S, S) pixel batches, CLIP-normalised on `device`."""
    out = [model.encode_image(normalize(pixels.to(device, non_blocking=True))) for pixels in batches]
    return torch.cat(out).float().cpu().numpy()


def text_encoder(
    model: torch.nn.Module, tokenizer, max_length: int, device: torch.device, batch_size: int = 512
) -> TextEncoder:
    """A function from captions to (N, D) embeddings, tokenised as in training (padded to max_length)."""

    @torch.no_grad()
    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            batch = texts[i : i + batch_size]
            tokens = tokenizer(batch, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
            out.append(model.encode_text(tokens["input_ids"].to(device), tokens["attention_mask"].to(device)))
        return torch.cat(out).float().cpu().numpy()

    return encode


def score_zero_shot(
    image: np.ndarray,
    labels: np.ndarray,
    class_texts: Sequence[str],
    templates: Sequence[str],
    encode_text: TextEncoder,
    primary: str = "acc1",
    image_metrics: bool = False,
) -> tuple[dict[str, float], ItemScores]:
    """acc1, acc5, mean_per_class_recall (and `primary`, one of the first or the last).

    Class embedding = normalised mean over templates of normalised prompt embeddings (as
    CLIP_benchmark). `image_metrics` adds paper D's image-only metrics on the same labels:
    `image_r1` (nearest other image shares the label) and `knn_acc` (k = 20, leave-one-out).
    """
    prompts = [template.format(c) for c in class_texts for template in templates]
    classes = class_embeddings(encode_text(prompts).reshape(len(class_texts), len(templates), -1))
    metrics = zero_shot(image, classes, labels)
    results = {"primary": metrics[primary], **{k: metrics[k] for k in ("acc1", "acc5", "mean_per_class_recall")}}
    if image_metrics:
        results["image_r1"] = float(image_retrieval_r1(image, labels).mean())
        results["knn_acc"] = float(knn_accuracy(image, labels, image, labels, leave_one_out=True).mean())
    if primary == "mean_per_class_recall":
        return results, ItemScores.class_recall(metrics["correct1"], labels)
    return results, ItemScores.accuracy(metrics["correct1"])


def score_retrieval(
    image: np.ndarray, captions: Sequence[Sequence[str]], encode_text: TextEncoder
) -> tuple[dict[str, float], ItemScores]:
    """Image->text and text->image R@1/5/10 with `captions[i]` the ground truth of image i;
    primary = the mean of the two R@1."""
    text_image = np.repeat(np.arange(len(captions)), [len(c) for c in captions])
    metrics = retrieval(image, encode_text([c for cs in captions for c in cs]), text_image)
    results = {"primary": metrics["mean_R@1"], **{k: v for k, v in metrics.items() if isinstance(v, float)}}
    return results, ItemScores.retrieval(metrics["i2t_hit1"], metrics["t2i_hit1"], text_image)
