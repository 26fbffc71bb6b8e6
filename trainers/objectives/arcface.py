"""Paper D's stage-1 terms: ArcFace over class proxies, and MCIP's pseudo-caption loss.

Schall et al., "Optimizing CLIP Models for Image Retrieval with Maintained Joint-Embedding
Alignment", SISAP 2024. docs/methods.md, method D: ArcMargin with scale s = 30 and
margin m = 0.1 (target logit s cos(theta + m), others s cos(theta)); MCIP's L_mc is a soft-target
CE of each image against every pseudo-caption in the global batch, 1/|P_i| on its own, with the
same margin and scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossContext, ObjectiveInputs, register_term, require

_EPS = 1e-6  # keeps acos differentiable at |cos| = 1


def margin_logits(cosine: torch.Tensor, is_target: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """s cos(theta + m) where `is_target`, s cos(theta) elsewhere."""
    theta = torch.acos(cosine.clamp(-1 + _EPS, 1 - _EPS))
    return scale * torch.where(is_target, torch.cos(theta + margin), cosine)


class ArcMarginProxies(nn.Module):
    """One learnable proxy per class; trained at `proxy_lr_multiplier` x the learning rate."""

    def __init__(self, n_classes: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) / dim**0.5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image @ F.normalize(self.weight, dim=-1).T  # (B, n_classes) cosines


@register_term("arcface", weight=None, needs=("labels",))
def arcface(inputs: ObjectiveInputs, ctx: LossContext) -> torch.Tensor:
    """CE over margin logits of image embeddings against the class proxies (needs labels)."""
    labels = require(inputs.labels, "labels", "arcface")
    cosine = ctx.modules["arcface"](inputs.image)
    is_target = F.one_hot(labels, cosine.shape[1]).bool()
    schedule = ctx.cfg.schedule
    return F.cross_entropy(margin_logits(cosine, is_target, schedule.arcface_scale, schedule.arcface_margin), labels)


@register_term("pseudo_caption", weight=None, needs=("pseudo_text", "pseudo_mask"))
def pseudo_caption(inputs: ObjectiveInputs, ctx: LossContext) -> torch.Tensor:
    """L_mc: soft-target CE of each local image against the global batch's pseudo-captions."""
    pseudo = require(inputs.pseudo_text, "pseudo_text", "pseudo_caption")  # (B_local, P, D)
    mask = require(inputs.pseudo_mask, "pseudo_mask", "pseudo_caption")
    b_local, per_item, _ = pseudo.shape
    columns = ctx.group.gather_constant(pseudo).flatten(0, 1)  # (B_global * P, D)
    valid = ctx.group.gather_constant(mask).flatten()  # (B_global * P,)
    owner = torch.arange(len(valid), device=valid.device) // per_item  # global item of each column
    own = (owner.unsqueeze(0) == ctx.targets(inputs.image).unsqueeze(1)) & valid  # (B_local, B_global * P)
    schedule = ctx.cfg.schedule
    logits = margin_logits(inputs.image @ columns.T, own, schedule.arcface_scale, schedule.arcface_margin)
    logits = logits.masked_fill(~valid, float("-inf"))
    target = own.float() / own.sum(1, keepdim=True).clamp(min=1)
    log_probs = F.log_softmax(logits, dim=1).masked_fill(~valid, 0.0)
    return -(target * log_probs).sum(1).mean()
