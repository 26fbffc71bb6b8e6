"""Every knob a shipped space draws changes the training (1,000 draws of each space).

For each draw, each drawn knob is moved to another of its values (another choice, or the far
end of its range); the config must then train differently, or refuse the move. "Trains
differently" is measured on what the train loop does: the stage plan (`stage_plan`), the
k-means it runs before each epoch (`reclustering`), MCIP's pseudo-caption selection
(`select_pseudo_captions`), and every stage's loss and temperature gradient on one fixed batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipsweep.orchestrator.search import StudySearcher
from clipsweep.orchestrator.space import Param
from clipsweep.orchestrator.spec import SweepSpec
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.mining import select_pseudo_captions
from clipsweep.trainers.objectives import ContrastiveObjective, ObjectiveInputs, WorkerGroup
from clipsweep.trainers.objectives.clusters import Clustering
from clipsweep.trainers.schedules import reclustering, stage_plan

SPACES = sorted((Path(__file__).resolve().parent.parent / "search_spaces").glob("*.yaml"))
DRAWS = 1000
B, D, K, CLASSES, P = 16, 8, 8, 4, 3
N_ITEMS = 3_300_000  # CC3M: no cluster count of a shipped space is capped by the data


def _batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    unit = lambda *shape: F.normalize(torch.randn(*shape, generator=g), dim=-1)  # noqa: E731
    return {
        "image": unit(B, D), "text": unit(B, D), "image_view": unit(B, D), "text_view": unit(B, D),
        "image_cluster": torch.arange(B) % K, "text_cluster": torch.arange(B) % K,
        "labels": torch.arange(B) % CLASSES, "pseudo_text": unit(B, P, D),
        "pseudo_mask": torch.ones(B, P, dtype=torch.bool),
    }  # fmt: skip


BATCH = _batch()
# Centroid cosines spread over [-0.95, 0.99] (every pair of the K clusters its own value), so
# any two thresholds of a space have a cluster pair between them; text clusters all alike.
_cosines = np.linspace(-0.95, 0.99, K * (K - 1) // 2)
IMAGE_TABLE = np.eye(K, dtype=np.float32)
IMAGE_TABLE[np.triu_indices(K, 1)] = _cosines
IMAGE_TABLE = np.maximum(IMAGE_TABLE, IMAGE_TABLE.T)
IMAGE_TABLE[np.tril_indices(K, -1)] = IMAGE_TABLE.T[np.tril_indices(K, -1)]
CLUSTERS = (Clustering(np.zeros(0), IMAGE_TABLE), Clustering(np.zeros(0), np.ones((K, K), dtype=np.float32)))
_rng = np.random.default_rng(0)
MINING = (np.sort(_rng.uniform(0.0, 0.6, (20, 10)))[:, ::-1], _rng.integers(0, 40, (20, 10)), np.repeat(np.arange(20), 2))


def training_signature(cfg: TrialConfig) -> tuple:
    """What the train loop does with `cfg`, as comparable data."""
    stages = stage_plan(cfg)
    plan = [(s.name, s.epochs, s.trainable, sorted(s.weights.items())) for s in stages]
    clusterings, clustered, batched = [], False, False
    for epoch in range(cfg.optim.epochs):
        step = reclustering(cfg, epoch, N_ITEMS, clustered, batched)
        clustered, batched = clustered or bool(step.negatives), batched or bool(step.batches)
        clusterings.append((step.negatives, step.batches))
    mining = None
    if any("pseudo_caption" in s.weights for s in stages):
        mining = select_pseudo_captions(*MINING[:2], MINING[2], cfg.schedule.pseudo_min_cosine).tobytes()
    torch.default_generator.manual_seed(0)  # the same ArcFace proxies for every config (CPU only: torch.manual_seed would queue a CUDA call each time)
    objective = ContrastiveObjective(cfg, D, n_classes=CLASSES, group=WorkerGroup())
    objective.set_clusters(*CLUSTERS)
    losses = []
    for stage in stages:
        scale = torch.tensor(math.log(1 / cfg.objective.temperature), requires_grad=cfg.objective.learnable_temperature)
        total = objective(ObjectiveInputs(**BATCH), scale, stage.weights)["total"]
        grad = torch.autograd.grad(total, scale, allow_unused=True)[0] if scale.requires_grad and total.requires_grad else None
        losses.append((total.item(), None if grad is None else grad.item()))
    return plan, clusterings, mining, losses


def _moves(p: Param, value: Any) -> list[Any]:
    """Other values of a drawn knob: every other choice, or the far end of its range."""
    if p.type == "choice":
        return [v for v in p.values if v != value]
    far = p.low if value > (p.low + p.high) / 2 else p.high  # type: ignore[operator]
    return [int(far) if p.type == "int" else float(far)]


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_drawn_knob_changes_the_training(path):
    spec = SweepSpec.from_yaml(str(path))
    spec = SweepSpec.from_dict({**spec.to_doc(), "search": {"algorithm": "random", "num_samples": DRAWS, "seed": 1}})
    searcher = StudySearcher(spec)
    params = {p.field: p for p in spec.params}
    seen: dict[Any, tuple] = {}

    def signature(overrides: dict[str, Any]) -> tuple | None:
        key = tuple(sorted(overrides.items()))
        if key not in seen:
            try:
                seen[key] = training_signature(spec.config_for(overrides))
            except ValueError:
                seen[key] = None  # the config refuses the move
        return seen[key]

    checked = 0
    for i in range(DRAWS):
        drawn = {k: v for k, v in searcher.suggest(f"t{i}").items() if "." in k}
        if searcher.configs[f"t{i}"]["role"] != "search":
            continue
        base = signature(drawn)
        assert base is not None, f"a draw the config refuses: {drawn}"
        for name, value in drawn.items():
            for other in _moves(params[name], value):
                moved = signature({**drawn, name: other})
                assert moved != base, f"{path.name}: {name} {value!r} -> {other!r} changes nothing in {drawn}"
                checked += 1
    assert checked > DRAWS  # every draw has at least one knob
