"""The cross-modal term: vanilla CLIP, with paper A's transform and paper B's negatives.

Radford et al. 2021 (CLIP): L_clip = 1/2 [CE(z, diag) + CE(z^T, diag)], z_ij = s_ij / t.
docs/methods.md: A changes z to f(s)/t (`logit_transforms.py`); B adds log(m_ij w_ij) to
the off-diagonal logits (`clusters.py`). Both reduce to L_clip at their baseline values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LossContext, ObjectiveInputs, register_term, require
from .clusters import pair_log_weights
from .logits import scaled_logits


def symmetric_infonce(
    a: torch.Tensor,
    b: torch.Tensor,
    ctx: LossContext,
    transform: bool = False,
    log_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """1/2 [CE(a_local vs b_global) + CE(b_local vs a_global)], positives on the diagonal.

    Args:
        a, b: local (B_local, D) embeddings; row i of a and of b are a positive pair.
        ctx: workers and temperature.
        transform: apply the objective's logit transform (cross-modal term only).
        log_weights: (B_local, B_global) offsets added to the logits of both directions (the
            pair weights are symmetric in i, j, so one matrix serves rows and columns).
    """
    cfg = ctx.cfg.objective if transform else None
    if ctx.group.world_size == 1:
        return _one_product_infonce(a, b, ctx.logit_scale, cfg, log_weights)
    targets = ctx.targets(a)
    a_all, b_all = ctx.gather(a), ctx.gather(b)
    losses = []
    for rows, cols in ((a, b_all), (b, a_all)):
        logits = scaled_logits(rows, cols, ctx.logit_scale, cfg)  # (B_local, B_global)
        if log_weights is not None:
            logits = logits + log_weights
        losses.append(F.cross_entropy(logits, targets))
    return (losses[0] + losses[1]) / 2


def _one_product_infonce(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, cfg, log_weights: torch.Tensor | None
) -> torch.Tensor:
    """The same loss with one worker: the columns' logits are the rows' transposed, so one
    product serves both directions (open_clip computes `image @ text.T` and `text @ image.T`:
    twice the matrix products, forward and backward), and one fused cross-entropy reads it
    both ways (`_SymmetricCrossEntropy`)."""
    logits = scaled_logits(a, b, logit_scale, cfg)
    if log_weights is not None:
        logits = logits + log_weights  # symmetric: the same offsets for both directions
    return _SymmetricCrossEntropy.apply(logits.float())  # fp32 under AMP, as cross_entropy is


class _SymmetricCrossEntropy(torch.autograd.Function):
    """1/2 [CE(z, diag) + CE(z^T, diag)] of a square z, with the gradient written out,
    (softmax_rows(z) + softmax_cols(z) - 2 I) / 2B: autograd's two cross-entropies keep more
    B x B buffers and pass over z more often (measured at B = 4096 on 2 cores: 150-190 ms
    against 275-290 ms for the loss alone).

    Each row's loss is taken as a difference before any mean: CE_i = log(1 + sum_{j != i}
    exp(z_ij - z_ii)) = softplus(logsumexp_{j != i}(z_ij - z_ii)). mean(lse) - mean(diag)
    would subtract two numbers near the logit scale (up to 100) in float32 and lose a small
    loss to cancellation (it went negative where every negative was masked); the softplus
    form is never negative and keeps its relative precision near 0.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        diag = logits.diagonal()
        shifted = torch.sub(logits, diag[:, None])  # z_ij - z_ii, rows
        shifted.diagonal().fill_(float("-inf"))
        rows = F.softplus(torch.logsumexp(shifted, 1))
        torch.sub(logits, diag[None, :], out=shifted)  # z_ij - z_jj, columns (same buffer)
        shifted.diagonal().fill_(float("-inf"))
        cols = F.softplus(torch.logsumexp(shifted, 0))
        ctx.save_for_backward(logits, diag + rows, diag + cols)  # each row's and column's logsumexp
        return (rows.mean() + cols.mean()) / 2

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        logits, rows, cols = ctx.saved_tensors
        out = torch.sub(logits, rows[:, None]).exp_()
        out.add_(torch.sub(logits, cols[None, :]).exp_())
        out.diagonal().sub_(2)
        return out.mul_(grad / (2 * logits.shape[0]))


# Its cluster inputs are read only under paper B's weighting; the train loop fills them whenever
# `negatives.weighting` is on, so they are not among its `needs`.
@register_term("clip", weight=1.0)
def cross_modal(inputs: ObjectiveInputs, ctx: LossContext) -> torch.Tensor:
    """L_cross: image-text InfoNCE over the global batch, with the configured variants."""
    negatives = ctx.cfg.negatives
    log_weights = None
    if negatives.weighting != "none":
        image_rows = require(inputs.image_cluster, "image_cluster", "clip")
        text_rows = require(inputs.text_cluster, "text_cluster", "clip")
        log_weights = pair_log_weights(
            image_rows,
            ctx.group.gather_constant(image_rows),
            text_rows,
            ctx.group.gather_constant(text_rows),
            ctx.buffers["image_centroid_cosine"],
            ctx.buffers["text_centroid_cosine"],
            ctx.targets(inputs.image),
            negatives,
        )
    return symmetric_infonce(inputs.image, inputs.text, ctx, transform=True, log_weights=log_weights)
