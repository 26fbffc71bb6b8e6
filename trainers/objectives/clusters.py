"""k-means (faiss) and what paper B derives from it: pair weights and false-negative masks.

Tagami et al., "Automatic data generation of incorrect image-text pairs for effective
contrastive learning of CLIP model", WSCG 2024. docs/methods.md, method B: with a_i, b_i
pair i's image and text cluster and C^I, C^T the centroid cosine matrices, for i != j
    m_ij = 0 if C^I[a_i, a_j] >= theta and C^T[b_i, b_j] >= theta else 1
    w_ij = 1 + lambda (1 - C^I[a_i, a_j]) / 2
and the loss adds log(m_ij w_ij) to z_ij off the diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch

from ..config import NegativesConfig


@dataclass(frozen=True)
class Clustering:
    """Assignment of every training item to a cluster, and the centroids' cosine matrix."""

    assignments: np.ndarray  # (N,) int64
    centroid_cosine: np.ndarray  # (K, K) float32


def kmeans(features: np.ndarray, k: int, seed: int = 0, n_iter: int = 25) -> Clustering:
    """Spherical k-means (cosine) of (N, D) features with faiss."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    if not 2 <= k <= len(x):
        raise ValueError(f"k={k}; allowed: 2 <= k <= {len(x)} (the number of items)")
    faiss.normalize_L2(x)
    km = faiss.Kmeans(x.shape[1], k, niter=n_iter, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1)
    km.train(x)
    _, assignments = km.index.search(x, 1)
    centroids = km.centroids / np.linalg.norm(km.centroids, axis=1, keepdims=True).clip(1e-12)
    return Clustering(assignments[:, 0].astype(np.int64), (centroids @ centroids.T).astype(np.float32))


def pair_log_weights(
    image_rows: torch.Tensor,
    image_cols: torch.Tensor,
    text_rows: torch.Tensor,
    text_cols: torch.Tensor,
    image_cosine: torch.Tensor,
    text_cosine: torch.Tensor,
    targets: torch.Tensor,
    cfg: NegativesConfig,
) -> torch.Tensor:
    """log(m_ij w_ij) for local rows vs global columns, 0 on each row's positive.

    Args:
        image_rows, text_rows: cluster ids of the local items (B_local,).
        image_cols, text_cols: cluster ids of the global batch (B_global,).
        image_cosine, text_cosine: centroid cosine matrices C^I (K_I, K_I), C^T (K_T, K_T).
        targets: column of each row's positive (B_local,).
        cfg: weighting kind, strength lambda and threshold theta.

    Returns:
        (B_local, B_global) additive logit offsets; -inf where a negative is masked.
    """
    # Work on the (K, K) cluster tables, then pick rows and columns with two 1-D index_selects
    # (broadcast advanced indexing would build two (B_local, B_global) int64 index tensors).
    def pairs(table: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return table.index_select(0, rows).index_select(1, cols)  # (B_local, B_global)

    if cfg.weighting in ("cluster_weight", "cluster_both"):
        log_w = pairs(torch.log1p(cfg.strength * (1 - image_cosine) / 2), image_rows, image_cols)
    else:
        log_w = torch.zeros(len(image_rows), len(image_cols), dtype=image_cosine.dtype, device=image_cosine.device)
    if cfg.weighting in ("cluster_mask", "cluster_both"):
        alike = pairs(image_cosine >= cfg.threshold, image_rows, image_cols) & pairs(
            text_cosine >= cfg.threshold, text_rows, text_cols
        )
        log_w = log_w.masked_fill(alike, float("-inf"))
    log_w[torch.arange(len(targets), device=targets.device), targets] = 0.0  # positives are never weighted
    return log_w


def cluster_hard_order(assignments: np.ndarray, batch_size: int, seed: int) -> np.ndarray:
    """A permutation of items whose consecutive batches draw from as few clusters as possible.

    Paper C's clustered hard-negative batching: clusters in random order, items shuffled inside
    each cluster, concatenated, then the batches (not the items) shuffled, so each batch's
    in-batch negatives come from one or two clusters.
    """
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(assignments == c)) for c in rng.permutation(np.unique(assignments))]
    )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))])
