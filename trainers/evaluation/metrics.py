"""Metrics of both suites: pure functions of L2-normalised embeddings and labels.

Definitions follow CLIP_benchmark: zero-shot acc@k and mean per-class recall (balanced
accuracy); retrieval R@k as in CLIP papers (an image query is correct at k if any of its
captions is in its top k; a caption query if its image is). Top-k search is exact inner
product with faiss. Each metric also comes per item (0/1), which is what the bootstrap resamples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np


def top_k_scores(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices), each (Q, k): each query's k highest inner products (faiss, exact)."""
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(np.ascontiguousarray(keys, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(keys)))


def top_k(queries: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Indices (Q, k) of each query's k highest inner products among the keys."""
    return top_k_scores(queries, keys, k)[1]


def class_embeddings(prompt_embeddings: np.ndarray) -> np.ndarray:
    """(C, T, D) embeddings of each class's T prompts -> (C, D): normalised mean of normalised."""
    x = prompt_embeddings / np.linalg.norm(prompt_embeddings, axis=-1, keepdims=True)
    mean = x.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def mean_per_class_recall(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in `labels` of the fraction predicted right."""
    return float(np.mean([np.mean(predictions[labels == c] == c) for c in np.unique(labels)]))


def zero_shot(image: np.ndarray, classes: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray | float]:
    """acc1, acc5 (NaN below 5 classes), mean_per_class_recall, and per-item `correct1`/`pred`."""
    ranked = top_k(image, classes, min(5, len(classes)))
    correct1 = (ranked[:, 0] == labels).astype(np.float64)
    acc5 = float(np.mean((ranked == labels[:, None]).any(1))) if len(classes) >= 5 else float("nan")
    return {
        "acc1": float(correct1.mean()),
        "acc5": acc5,
        "mean_per_class_recall": mean_per_class_recall(ranked[:, 0], labels),
        "correct1": correct1,
        "pred": ranked[:, 0],
    }


def retrieval(
    image: np.ndarray, text: np.ndarray, text_image: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, np.ndarray | float]:
    """Image->text and text->image R@k; `text_image[t]` is the image of caption t.

    Returns `i2t_R@k`, `t2i_R@k` and `mean_R@1` (the primary metric), plus per-item hits
    `i2t_hit1` (per image) and `t2i_hit1` (per caption).
    """
    k_max = max(ks)
    i2t = text_image[top_k(image, text, k_max)] == np.arange(len(image))[:, None]  # (I, k): caption's image is the query
    t2i = top_k(text, image, k_max) == text_image[:, None]  # (T, k)
    out: dict[str, np.ndarray | float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float(i2t[:, :k].any(1).mean())
        out[f"t2i_R@{k}"] = float(t2i[:, :k].any(1).mean())
    out["mean_R@1"] = (out["i2t_R@1"] + out["t2i_R@1"]) / 2
    out["i2t_hit1"] = i2t[:, 0].astype(np.float64)
    out["t2i_hit1"] = t2i[:, 0].astype(np.float64)
    return out


def image_retrieval_r1(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-image hit (0/1): is the nearest other image of the same label? (paper D's I->I R@1)"""
    nearest = top_k(image, image, 2)
    # The query itself is normally first; where a duplicate outranks it, take whichever is not it.
    other = np.where(nearest[:, 0] == np.arange(len(image)), nearest[:, 1], nearest[:, 0])
    return (labels[other] == labels).astype(np.float64)


def knn_accuracy(
    keys: np.ndarray, key_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray, k: int = 20,
    leave_one_out: bool = False,
) -> np.ndarray:
    """Per-query hit (0/1) of k-NN classification (cosine, faiss): majority label of the k nearest.

    Ties go to the label whose neighbours have the higher summed similarity. With
    `leave_one_out` the keys are the queries and each query's own entry is skipped.
    """
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(np.ascontiguousarray(keys, dtype=np.float32))
    scores, neighbours = index.search(np.ascontiguousarray(queries, dtype=np.float32), k + int(leave_one_out))
    if leave_one_out:
        own = neighbours == np.arange(len(queries))[:, None]
        keep = ~own
        keep[own.sum(1) == 0, -1] = False  # self not found: drop the farthest so k remain
        neighbours = neighbours[keep].reshape(len(queries), k)
        scores = scores[keep].reshape(len(queries), k)
    hits = np.empty(len(queries))
    for i, (labels, sims) in enumerate(zip(key_labels[neighbours], scores)):
        values, votes = np.unique(labels, return_counts=True)
        best = values[votes == votes.max()]
        if len(best) > 1:
            best = best[[np.argmax([sims[labels == b].sum() for b in best])]]
        hits[i] = float(best[0] == query_labels[i])
    return hits


@dataclass(frozen=True)
class ItemScores:
    """A primary metric kept per evaluation item, so that a bootstrap can resample the items.

    metric = mean over parts p of (sum_i hits[i, p]) / (sum_i counts[i, p]). One part is plain
    accuracy; one part per class is mean per-class recall; two parts (image->text per image,
    text->image summed over the image's captions) are the mean R@1 of retrieval. Parts that no
    item counts towards (a class absent from a resample) are left out of the mean.
    """

    hits: np.ndarray  # (N, P)
    counts: np.ndarray  # (N, P)

    @classmethod
    def accuracy(cls, correct: np.ndarray) -> ItemScores:
        correct = np.asarray(correct, dtype=np.float32)[:, None]
        return cls(correct, np.ones_like(correct))

    @classmethod
    def class_recall(cls, correct: np.ndarray, labels: np.ndarray) -> ItemScores:
        """Mean per-class recall (balanced accuracy) over the classes present in `labels`."""
        classes, column = np.unique(labels, return_inverse=True)
        counts = np.zeros((len(labels), len(classes)), dtype=np.float32)
        counts[np.arange(len(labels)), column] = 1
        return cls(counts * np.asarray(correct, dtype=np.float32)[:, None], counts)

    @classmethod
    def retrieval(cls, i2t_hit: np.ndarray, t2i_hit: np.ndarray, text_image: np.ndarray) -> ItemScores:
        """Mean of image->text and text->image R@1, per image (its captions travel with it)."""
        n = len(i2t_hit)
        t2i_hits = np.bincount(text_image, weights=t2i_hit, minlength=n)
        captions = np.bincount(text_image, minlength=n)
        return cls(
            np.stack([i2t_hit, t2i_hits], axis=1).astype(np.float32),
            np.stack([np.ones(n), captions], axis=1).astype(np.float32),
        )

    def value(self) -> float:
        """The metric on all items (what the suite reports)."""
        hits, counts = self.hits.sum(0, dtype=np.float64), self.counts.sum(0, dtype=np.float64)
        present = counts > 0
        return float(np.mean(hits[present] / counts[present]))
