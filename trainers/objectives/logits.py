"""Paper A's logit transforms: a fixed monotone f spreads the similarity matrix.

Mohammadi et al., "Image-Text Connection: Exploring the Expansion of the Diversity Within Joint
Feature Space Similarity Scores", IEEE Access 2023. DESIGN.md "Method definitions", A:
z_ij = f(s_ij) / t. (f(s_ij / t) is not a variant: it is not monotone for sine, and bounds the
sigmoids' logits.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import ObjectiveConfig

Transform = Callable[[torch.Tensor, ObjectiveConfig], torch.Tensor]
TRANSFORMS: dict[str, Transform] = {}


def register_transform(fn: Transform) -> Transform:
    """Registers `fn` under its name; names are the values of `objective.logit_transform`."""
    if fn.__name__ in TRANSFORMS:
        raise ValueError(f"logit transform {fn.__name__!r} registered twice")
    TRANSFORMS[fn.__name__] = fn
    return fn


@register_transform
def identity(s: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    return s


@register_transform
def sine(s: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """f(s) = sin(omega s); monotone on [-1, 1] for omega <= pi/2."""
    return torch.sin(cfg.omega * s)


@register_transform
def sigmoid(s: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """f(s) = sigmoid(k (s - c)), range (0, 1)."""
    return torch.sigmoid(cfg.k * (s - cfg.c))


@register_transform
def sigmoid_centered(s: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """f(s) = 2 sigmoid(k s) - 1, range (-1, 1), f(0) = 0."""
    return 2 * torch.sigmoid(cfg.k * s) - 1


def scaled_logits(
    rows: torch.Tensor, cols: torch.Tensor, logit_scale: torch.Tensor, cfg: ObjectiveConfig | None = None
) -> torch.Tensor:
    """Embeddings (B_rows, D), (B_cols, D) -> logits z (B_rows, B_cols).

    With no transform (`cfg` None or identity) the scale multiplies the (B_rows, D) rows before
    the product, as open_clip does, so no extra (B_rows, B_cols) tensor is kept for backward.
    """
    scale = logit_scale.exp()
    if cfg is None or cfg.logit_transform == "identity":
        return (rows * scale) @ cols.T
    transform = TRANSFORMS[cfg.logit_transform]
    return transform(rows @ cols.T, cfg) * scale
