"""One interface over the two benchmark suites, for whatever scores a model (train loop, finalists).

`SuiteSettings` is plain data (it travels to Ray workers as a dict); `LoadedSuite` reads a tier
once and then scores any number of models (every epoch of a trial) on it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.tokenizer import load_tokenizer
from .metrics import ItemScores
from .paper10 import Paper10Settings, load_paper10, score_paper10
from .synthetic10 import load_eval_set, score_synthetic10

SUITES = ("synthetic10", "paper10")
TIERS = ("cheap", "full")


@dataclass(frozen=True)
class SuiteSettings:
    """Which suite, and where its data lies."""

    name: str = "synthetic10"
    heldout: str | None = None  # synthetic10: the corpus' held-out split
    roots: dict[str, str] = field(default_factory=dict)  # paper10: dataset -> local root
    cheap_size: int = 500  # paper10 cheap tier: classification items per dataset
    cheap_retrieval_size: int = 200  # paper10 cheap tier: retrieval images per dataset

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuiteSettings:
        return cls(**data)

    @property
    def paper10(self) -> Paper10Settings:
        return Paper10Settings(dict(self.roots), self.cheap_size, self.cheap_retrieval_size)

    def check(self) -> None:
        """Raises `ValueError` naming the field when the suite cannot be loaded as configured."""
        if self.name not in SUITES:
            raise ValueError(f"suite.name={self.name!r}; allowed: {', '.join(SUITES)}")
        if self.name == "synthetic10" and self.heldout is None:
            raise ValueError("data.heldout is missing; the synthetic10 suite scores trials on the held-out split")
        if self.name == "paper10":
            self.paper10.check()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def skipped_note(self) -> str | None:
        """The line a run prints about paper10 datasets left out (none configured for them)."""
        skipped = self.paper10.skipped() if self.name == "paper10" else []
        return f"paper10: skipped (no root configured): {', '.join(skipped)}" if skipped else None


class LoadedSuite:
    """A suite's tier in memory (decoded synthetic scenes, or paper10's indexed test splits)."""

    def __init__(self, settings: SuiteSettings, tier: str, image_size: int) -> None:
        if tier not in TIERS:
            raise ValueError(f"tier={tier!r}; allowed: {', '.join(TIERS)}")
        self.settings, self.tier, self.image_size = settings, tier, image_size
        if settings.name == "synthetic10":
            self.data: Any = load_eval_set(settings.heldout, tier, image_size)
        else:
            self.data = load_paper10(settings.paper10, tier)

    def score(
        self, model: torch.nn.Module, tokenizer_dir: str, max_length: int, device: torch.device | str = "cpu"
    ) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
        """Each task's metrics (with `primary`) and its primary metric per item."""
        if self.settings.name == "synthetic10":
            return score_synthetic10(model, self.data, tokenizer_dir, max_length, device)
        return score_paper10(model, self.data, load_tokenizer(tokenizer_dir), self.image_size, max_length, device)


def flatten(results: dict[str, dict[str, float]], prefix: str = "bench") -> dict[str, float]:
    """`{"bench/shape/acc1": ..., ...}` plus `bench/mean_primary`, for reports and MLflow."""
    flat = {f"{prefix}/{task}/{name}": value for task, metrics in results.items() for name, value in metrics.items()}
    flat[f"{prefix}/mean_primary"] = float(np.mean([m["primary"] for m in results.values()]))
    return flat
