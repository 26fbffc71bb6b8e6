"""A suite's tier loaded once, for whatever scores a model (train loop, finalists).

`LoadedSuite` reads a tier of the suite that `SuiteSettings` names once, then scores any number
of models (every epoch of a trial) on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .metrics import ItemScores
from .settings import SuiteSettings
from .suites import SUITES

TIERS = ("cheap", "full")


class LoadedSuite:
    """A suite's tier in memory (decoded synthetic scenes, or paper10's indexed test splits)."""

    def __init__(self, settings: SuiteSettings, tier: str, image_size: int) -> None:
        if tier not in TIERS:
            raise ValueError(f"tier={tier!r}; allowed: {', '.join(TIERS)}")
        self.settings, self.tier, self.image_size = settings, tier, image_size
        self.suite = SUITES[settings.name]
        self.data: Any = self.suite.load(settings, tier, image_size)

    def score(
        self, model: torch.nn.Module, tokenizer_dir: str, max_length: int, device: torch.device | str = "cpu"
    ) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
        """Each task's metrics (with `primary`) and its primary metric per item."""
        return self.suite.score(self.data, model, tokenizer_dir, max_length, self.image_size, device)


def flatten(results: dict[str, dict[str, float]], prefix: str = "bench") -> dict[str, float]:
    """`{"bench/shape/acc1": ..., ...}` plus `bench/mean_primary`, for reports and MLflow."""
    flat = {f"{prefix}/{task}/{name}": value for task, metrics in results.items() for name, value in metrics.items()}
    flat[f"{prefix}/mean_primary"] = float(np.mean([m["primary"] for m in results.values()]))
    return flat
