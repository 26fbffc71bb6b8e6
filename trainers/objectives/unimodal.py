"""Paper C's uni-modal terms: InfoNCE between two views of each image, and of each caption.

Zhu & Li, "Iterative Uni-modal and Cross-modal Clustered Contrastive Learning for Image-text
Retrieval", PRMVIA 2023. DESIGN.md "Method definitions", C: L = L_cross + alpha L_II + beta L_TT,
same temperature, global batch. The logit transform belongs to the cross-modal term only.
"""

from __future__ import annotations

import torch

from .base import LossContext, ObjectiveInputs, register_term, require
from .clip import symmetric_infonce


@register_term("image_image")
def image_image(inputs: ObjectiveInputs, ctx: LossContext) -> torch.Tensor:
    """L_II: each image against its second augmented view (random resized crop, flip, jitter)."""
    return symmetric_infonce(inputs.image, require(inputs.image_view, "image_view", "image_image"), ctx)


@register_term("text_text")
def text_text(inputs: ObjectiveInputs, ctx: LossContext) -> torch.Tensor:
    """L_TT: each caption against another caption of the item (or a token-dropped copy)."""
    return symmetric_infonce(inputs.text, require(inputs.text_view, "text_view", "text_text"), ctx)


def drop_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletes each non-special token with probability p and left-packs what remains.

    The first token ([CLS]) and the last real token ([SEP]) are always kept.

    Returns:
        (input_ids, attention_mask) of the same shape, padded with the original pad id (0).
    """
    lengths = attention_mask.sum(1)  # (B,)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    special = (positions == 0) | (positions == (lengths - 1).unsqueeze(1))
    keep = attention_mask.bool() & (special | (torch.rand(input_ids.shape, generator=generator) >= p))
    # Stable sort puts kept tokens first, in order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    new_mask = torch.gather(keep, 1, order)
    new_ids = torch.gather(input_ids, 1, order).masked_fill(~new_mask, 0)
    return new_ids, new_mask.to(attention_mask.dtype)
