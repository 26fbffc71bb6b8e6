"""The trial's objective: a weighted sum of registered terms, each also returned by name."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import TrialConfig
from .arcface import ArcMarginProxies
from .base import TERMS, LossContext, ObjectiveInputs
from .clusters import Clustering
from .distributed import WorkerGroup


class ContrastiveObjective(nn.Module):
    """Owns the distributed state, the ArcFace proxies and the cluster matrices of a trial.

    Args:
        cfg: the trial config.
        embed_dim: dimension of the shared embedding space.
        n_classes: number of labels (creates ArcFace proxies when the schedule needs them).
        group: rank and world size; read from `torch.distributed` when None.
    """

    def __init__(
        self, cfg: TrialConfig, embed_dim: int, n_classes: int | None = None, group: WorkerGroup | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.group = group or WorkerGroup.current()
        self.proxies: dict[str, nn.Module] = {}
        if cfg.schedule.kind == "two_stage" and cfg.schedule.stage1_loss == "arcface":
            if not n_classes:
                raise ValueError("schedule.stage1_loss='arcface' needs labels (n_classes); allowed without: 'simclr'")
            self.arcface = ArcMarginProxies(n_classes, embed_dim)
            self.proxies["arcface"] = self.arcface
        self.register_buffer("image_centroid_cosine", torch.zeros(0, 0), persistent=False)
        self.register_buffer("text_centroid_cosine", torch.zeros(0, 0), persistent=False)

    def set_clusters(self, image: Clustering, text: Clustering) -> None:
        """Installs paper B's centroid cosine matrices (after each (re-)clustering)."""
        tables = {"image": image.centroid_cosine, "text": text.centroid_cosine}
        self.load_cluster_state({name: torch.from_numpy(np.asarray(table)) for name, table in tables.items()})

    def cluster_state(self) -> dict[str, torch.Tensor]:
        """The centroid cosine matrices, for a checkpoint (their shape changes with K, so they
        are not in `state_dict`, which loads only into buffers of the same shape)."""
        return {"image": self.image_centroid_cosine.cpu(), "text": self.text_centroid_cosine.cpu()}

    def load_cluster_state(self, state: dict[str, torch.Tensor]) -> None:
        device = self.image_centroid_cosine.device
        self.image_centroid_cosine = state["image"].to(device)
        self.text_centroid_cosine = state["text"].to(device)

    def forward(
        self, inputs: ObjectiveInputs, logit_scale: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        """Computes each term with a non-zero weight; `total` is their weighted sum.

        Raises:
            ValueError: a weight for a term that is not registered, or no non-zero weight.
        """
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise ValueError(f"loss term {unknown[0]!r} is not registered; known: {', '.join(sorted(TERMS))}")
        ctx = LossContext(
            self.cfg,
            self.group,
            logit_scale,
            modules=self.proxies,
            buffers={"image_centroid_cosine": self.image_centroid_cosine, "text_centroid_cosine": self.text_centroid_cosine},
        )
        terms = {name: TERMS[name].fn(inputs, ctx) for name, weight in weights.items() if weight}
        if not terms:
            raise ValueError(f"weights={weights}: no loss term has a non-zero weight")
        weighted = [value if weights[name] == 1 else weights[name] * value for name, value in terms.items()]
        terms["total"] = weighted[0] if len(weighted) == 1 else torch.stack(weighted).sum()
        return terms
