"""Objective cases shared by the single-process and the 2-process (gloo) runs of the tests.

Each case builds a config, deterministic global-batch inputs and stage weights; `run_case`
computes the loss and the gradients of every input on one worker's slice.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.objectives import ContrastiveObjective, ObjectiveInputs, WorkerGroup
from clipsweep.trainers.objectives.clusters import Clustering

B, D, P, CLASSES = 8, 16, 3, 4

CASES: dict[str, tuple[dict, dict[str, float]]] = {
    "vanilla": ({}, {"clip": 1.0}),
    "sine": ({"objective": {"logit_transform": "sine"}}, {"clip": 1.0}),
    "sigmoid": ({"objective": {"logit_transform": "sigmoid", "c": 0.1}}, {"clip": 1.0}),
    "sigmoid_centered": ({"objective": {"logit_transform": "sigmoid_centered"}}, {"clip": 1.0}),
    "sine_omega": ({"objective": {"logit_transform": "sine", "omega": 0.8}}, {"clip": 1.0}),
    "cluster_weight": ({"negatives": {"weighting": "cluster_weight", "strength": 2.0}}, {"clip": 1.0}),
    "cluster_mask": ({"negatives": {"weighting": "cluster_mask", "threshold": 0.5}}, {"clip": 1.0}),
    "cluster_both": ({"negatives": {"weighting": "cluster_both", "threshold": 0.5}}, {"clip": 1.0}),
    "unimodal": (
        {"unimodal": {"image_weight": 0.5, "text_weight": 0.3}},
        {"clip": 1.0, "image_image": 0.5, "text_text": 0.3},
    ),
    "arcface": ({"schedule": {"kind": "two_stage"}}, {"arcface": 1.0}),
    "mcip": (
        {"schedule": {"kind": "two_stage", "pseudo_captions": True}},
        {"arcface": 0.75, "pseudo_caption": 0.25},
    ),
}


def global_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    unit = lambda *shape: F.normalize(torch.randn(*shape, generator=g), dim=-1)  # noqa: E731
    return {
        "image": unit(B, D),
        "text": unit(B, D),
        "image_view": unit(B, D),
        "text_view": unit(B, D),
        "image_cluster": torch.tensor([0, 0, 1, 2, 1, 0, 2, 2]),
        "text_cluster": torch.tensor([1, 0, 1, 2, 2, 0, 1, 2]),
        "labels": torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]),
        "pseudo_text": unit(B, P, D),
        "pseudo_mask": torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 1]] * 2, dtype=torch.bool),
    }


def clusterings() -> tuple[Clustering, Clustering]:
    rng = np.random.default_rng(1)
    image = F.normalize(torch.from_numpy(rng.normal(size=(3, 4))).float(), dim=-1)
    text = F.normalize(torch.from_numpy(rng.normal(size=(3, 4))).float(), dim=-1)
    return Clustering(np.zeros(0), (image @ image.T).numpy()), Clustering(np.zeros(0), (text @ text.T).numpy())


GRAD_FIELDS = ("image", "text", "image_view", "text_view")


def run_case(name: str, group: WorkerGroup) -> dict[str, torch.Tensor]:
    """Loss terms and gradients (inputs, logit scale, proxies) on this worker's slice."""
    overrides, weights = CASES[name]
    cfg = TrialConfig.from_dict({"optim": {"epochs": 3}, **overrides})
    torch.manual_seed(0)  # same proxies on every worker
    objective = ContrastiveObjective(cfg, D, n_classes=CLASSES, group=group)
    objective.set_clusters(*clusterings())
    local = slice(group.rank * B // group.world_size, (group.rank + 1) * B // group.world_size)
    tensors = {k: v[local].clone() for k, v in global_inputs().items()}
    for k in GRAD_FIELDS:
        tensors[k].requires_grad_(True)
    logit_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    terms = objective(ObjectiveInputs(**tensors), logit_scale, weights)
    terms["total"].backward()
    out = {f"loss/{k}": v.detach() for k, v in terms.items()}
    out.update({f"grad/{k}": tensors[k].grad for k in GRAD_FIELDS if tensors[k].grad is not None})
    out["grad/logit_scale"] = logit_scale.grad if logit_scale.grad is not None else torch.tensor(0.0)
    if hasattr(objective, "arcface"):
        out["grad/proxies"] = objective.arcface.weight.grad
    return out
