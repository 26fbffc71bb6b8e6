"""Paper C's uni-modal terms: InfoNCE between two views of each image, and of each caption.

Zhu & Li, "Iterative Uni-modal and Cross-modal Clustered Contrastive Learning for Image-text
Retrieval", PRMVIA 2023. docs/methods.md, method C: L = L_cross + alpha L_II + beta L_TT,
same temperature, global batch. The logit transform belongs to the cross-modal term only.
"""

from __future__ import annotations

import torch

from .base import LossContext, ObjectiveInputs, register_term, require
from .clip import symmetric_infonce


@register_term("image_image", weight="unimodal.image_weight", needs=("image_view",))
def image_image(inputs: ObjectiveInputs, ctx: LossContext) -> torch.Tensor:
    """L_II: each image against its second augmented view (random resized crop, flip, jitter)."""
    return symmetric_infonce(inputs.image, require(inputs.image_view, "image_view", "image_image"), ctx)


@register_term("text_text", weight="unimodal.text_weight", needs=("text_view",))
def text_text(inputs: ObjectiveInputs, ctx: LossContext) -> torch.Tensor:
    """L_TT: each caption against another caption of the item (or a token-dropped copy)."""
    return symmetric_infonce(inputs.text, require(inputs.text_view, "text_view", "text_text"), ctx)

