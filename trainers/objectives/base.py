"""What every loss term sees, and the registry that names the terms.

A term is a function of (inputs, context) returning a scalar; the stage plan weights terms by
name (`clip`, `image_image`, `text_text`, `arcface`, `pseudo_caption`), and each term is logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..config import TrialConfig
from .distributed import WorkerGroup


@dataclass
class ObjectiveInputs:
    """One worker's slice of the global batch: L2-normalised embeddings and batch metadata.

    Optional fields are needed only by the terms that use them (named in brackets).
    """

    image: torch.Tensor  # (B_local, D)
    text: torch.Tensor  # (B_local, D)
    image_view: torch.Tensor | None = None  # (B_local, D) second augmented view [image_image]
    text_view: torch.Tensor | None = None  # (B_local, D) second caption view [text_text]
    image_cluster: torch.Tensor | None = None  # (B_local,) int64 [clip with cluster negatives]
    text_cluster: torch.Tensor | None = None  # (B_local,) int64
    labels: torch.Tensor | None = None  # (B_local,) int64 [arcface]
    pseudo_text: torch.Tensor | None = None  # (B_local, P, D) frozen pseudo-caption embeddings [pseudo_caption]
    pseudo_mask: torch.Tensor | None = None  # (B_local, P) bool, True where a pseudo-caption exists


@dataclass
class LossContext:
    """State shared by the terms of one step: config, workers, temperature, cached gathers."""

    cfg: TrialConfig
    group: WorkerGroup
    logit_scale: torch.Tensor  # scalar, ln(1/t)
    modules: dict[str, torch.nn.Module] = field(default_factory=dict)  # e.g. arcface proxies
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. centroid cosine matrices
    _gathered: dict[int, torch.Tensor] = field(default_factory=dict)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable all-gather, done once per tensor per step."""
        if id(x) not in self._gathered:
            self._gathered[id(x)] = self.group.gather(x)
        return self._gathered[id(x)]

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.targets(len(x), x.device)


Term = Callable[[ObjectiveInputs, LossContext], torch.Tensor]
TERMS: dict[str, Term] = {}


def register_term(name: str) -> Callable[[Term], Term]:
    """Registers a loss term under `name`, the key stage plans weight it by."""

    def wrap(fn: Term) -> Term:
        if name in TERMS:
            raise ValueError(f"loss term {name!r} registered twice")
        TERMS[name] = fn
        return fn

    return wrap


def require(value: torch.Tensor | None, field_name: str, term: str) -> torch.Tensor:
    """The input a term needs, or an error that says which term needs which field."""
    if value is None:
        raise ValueError(f"loss term {term!r} needs ObjectiveInputs.{field_name}, which this batch lacks")
    return value
