"""Stage plans: which parameters train, with which loss terms, for how many epochs.

joint        one stage: clip + alpha image_image + beta text_text
multi_stage  paper C: stage 1 clip only (alignment warm-up), stage 2 the full loss
two_stage    paper D: stage 1 the image tower alone (arcface or simclr, optionally with
             pseudo-captions), stage 2 the text tower alone re-aligned with clip to the
             frozen image embeddings (which the train loop may precompute)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .config import TrialConfig
from .objectives import TERMS, full_weights

IMAGE_SIDE = ("image_tower", "image_proj")
TEXT_SIDE = ("text_tower", "text_proj")


@dataclass(frozen=True)
class Stage:
    """One stage of a plan."""

    name: str
    epochs: int
    trainable: tuple[str, ...]  # parameter-name prefixes of the model and objective
    weights: dict[str, float]  # loss term -> weight (zero weights are left out)


def stage_plan(cfg: TrialConfig) -> list[Stage]:
    """The stages of `cfg.schedule` over `cfg.optim.epochs` epochs."""
    full = full_weights(cfg)
    everything = IMAGE_SIDE + TEXT_SIDE + ("logit_scale",)
    schedule, epochs = cfg.schedule, cfg.optim.epochs
    if schedule.kind == "joint":
        return [Stage("joint", epochs, everything, full)]
    rest = epochs - schedule.stage1_epochs
    if schedule.kind == "multi_stage":
        return [Stage("align", schedule.stage1_epochs, everything, {"clip": 1.0}), Stage("full", rest, everything, full)]
    if schedule.stage1_loss == "arcface":
        stage1, trainable = {"arcface": 1.0}, IMAGE_SIDE + ("arcface",)
    else:  # simclr: L_II at the shared temperature
        stage1, trainable = {"image_image": 1.0}, IMAGE_SIDE + ("logit_scale",)
    if schedule.pseudo_captions:
        stage1 = {name: (1 - schedule.pseudo_weight) * w for name, w in stage1.items()}
        stage1["pseudo_caption"] = schedule.pseudo_weight
    return [
        Stage("image", schedule.stage1_epochs, trainable, stage1),
        Stage("realign", rest, TEXT_SIDE + ("logit_scale",), {"clip": 1.0}),
    ]


def needs_views(cfg: TrialConfig) -> bool:
    """Whether any stage trains a term that reads second views (paper C's L_II / L_TT, SimCLR)."""
    return any(TERMS[name].needs_views for stage in stage_plan(cfg) for name in stage.weights)


@dataclass(frozen=True)
class Reclustering:
    """What the train loop clusters before an epoch (None: nothing of that kind)."""

    negatives: tuple[int, int | None] | None = None  # paper B: K_I, and K_T where the mask reads text clusters
    batches: int | None = None  # paper C: clusters of [u; v] that batches are filled from


def reclustering(cfg: TrialConfig, epoch: int, n_items: int, clustered: bool, batched: bool) -> Reclustering:
    """Paper B's and C's k-means before `epoch` (0-based), capped by the `n_items` training items.

    Args:
        clustered, batched: whether paper B's clusters / paper C's batch clusters already exist
            (a resumed run restores them from its checkpoint).
    """
    negatives, batching = cfg.negatives, cfg.batching
    plan = Reclustering()
    if negatives.weighting != "none" and (
        not clustered or (negatives.features == "current" and epoch % negatives.recluster_every == 0)
    ):
        masked = negatives.weighting in ("cluster_mask", "cluster_both")
        k_text = min(negatives.n_clusters_text, n_items) if masked else None
        plan = Reclustering(negatives=(min(negatives.n_clusters_image, n_items), k_text))
    if batching.mode == "cluster_hard" and (not batched or epoch % batching.recluster_every == 0):
        k = batching.n_clusters or max(2, n_items // cfg.optim.batch_size)  # about N / B
        plan = Reclustering(plan.negatives, min(k, n_items))
    return plan


def apply_stage(modules: dict[str, nn.Module], stage: Stage) -> list[nn.Parameter]:
    """Sets `requires_grad` by the stage's prefixes; returns the trainable parameters.

    Args:
        modules: named modules whose parameter names get the key as a prefix, e.g.
            {"": model, "arcface": objective.arcface}.
    """
    trainable = []
    for prefix, module in modules.items():
        for name, param in module.named_parameters():
            full = f"{prefix}.{name}" if prefix else name
            param.requires_grad_(full.startswith(stage.trainable))
            if param.requires_grad:
                trainable.append(param)
    return trainable


def param_groups(
    modules: dict[str, nn.Module], stage: Stage, lr: float, weight_decay: float, proxy_lr_multiplier: float
) -> list[dict]:
    """AdamW groups of the stage's trainable parameters.

    Matrices decay; biases, norms and the logit scale do not (as open_clip); ArcFace proxies
    train at `proxy_lr_multiplier` x lr (paper D: 100x).
    """
    apply_stage(modules, stage)
    decay, no_decay, proxies = [], [], []
    for prefix, module in modules.items():
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if prefix == "arcface":
                proxies.append(param)
            elif param.ndim < 2 or "logit_scale" in name:
                no_decay.append(param)
            else:
                decay.append(param)
    groups = [
        {"params": decay, "lr": lr, "weight_decay": weight_decay},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        {"params": proxies, "lr": lr * proxy_lr_multiplier, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
