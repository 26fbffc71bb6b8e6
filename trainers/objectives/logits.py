"""The logits of a similarity matrix: temperature, and paper A's transform from its registry."""

from __future__ import annotations

import torch

from ..config import ObjectiveConfig
from ..logit_transforms import TRANSFORMS


def scaled_logits(
    rows: torch.Tensor, cols: torch.Tensor, logit_scale: torch.Tensor, cfg: ObjectiveConfig | None = None
) -> torch.Tensor:
    """Embeddings (B_rows, D), (B_cols, D) -> logits z = f(s) / t (B_rows, B_cols).

    With no transform (`cfg` None or identity) the scale multiplies the (B_rows, D) rows before
    the product, as open_clip does, so no extra (B_rows, B_cols) tensor is kept for backward.
    """
    scale = logit_scale.exp()
    if cfg is None or cfg.logit_transform == "identity":
        return (rows * scale) @ cols.T
    return TRANSFORMS[cfg.logit_transform].f(rows @ cols.T, cfg) * scale
