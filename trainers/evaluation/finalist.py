"""Re-evaluating a trained trial from its checkpoint: the leaderboard's finalists on the full tier.

Runs wherever the caller puts it (a Ray task on a GPU node, or this process): it needs the
trial's config, the model weights and the suite's data paths, all plain values.
"""

from __future__ import annotations

from typing import Any

import torch

from ..checkpoint import load_checkpoint
from ..config import TrialConfig
from ..models.dual_encoder import DualEncoder
from .metrics import ItemScores
from .settings import SuiteSettings
from .suite import LoadedSuite


def load_weights(directory: str) -> dict[str, torch.Tensor]:
    """The model's state dict from a train-loop checkpoint directory (no optimizer state).

    Raises:
        FileNotFoundError: the directory holds no train-loop checkpoint.
        UnsafeCheckpointError: the checkpoint needs pickle to load.
    """
    return load_checkpoint(directory)["model"]


def evaluate_weights(
    trial: dict[str, Any], weights: dict[str, torch.Tensor], suite: dict[str, Any], tokenizer_dir: str, tier: str = "full"
) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
    """A trained model's metrics and per-item primary scores on `tier` of `suite` (`SuiteSettings`)."""
    cfg = TrialConfig.from_dict(trial)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = DualEncoder(cfg.model, cfg.objective)
    model.load_state_dict(weights)
    loaded = LoadedSuite(SuiteSettings.from_dict(suite), tier, cfg.model.image_size)
    return loaded.score(model.to(device), tokenizer_dir, cfg.model.max_length, device)
