"""The benchmark suites by name, behind one protocol: what `suite.name` may be, and what each suite does.

A new suite is one class with these five methods, added to `SUITES`; the settings, the loader
that scores every epoch, the preflight and `clipsweep train`'s chance column all go through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch

from .metrics import ItemScores
from .paper10 import Paper10
from .synthetic10 import Synthetic10

if TYPE_CHECKING:
    from .settings import SuiteSettings


class Suite(Protocol):
    """A benchmark suite: checked before Ray, loaded once per tier, then scoring any model."""

    def check(self, settings: SuiteSettings, images: bool) -> None:
        """Raises `ValueError` naming the field when the suite cannot load as configured."""

    def skipped(self, settings: SuiteSettings) -> list[str]:
        """Benchmarks of the suite left out by the settings (reported, never silently dropped)."""

    def load(self, settings: SuiteSettings, tier: str, image_size: int) -> Any:
        """A tier of the suite in memory."""

    def score(
        self, data: Any, model: torch.nn.Module, tokenizer_dir: str, max_length: int, image_size: int, device: torch.device | str
    ) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
        """Each task's metrics (with `primary`) and its primary metric per item."""

    def chance_levels(self, settings: SuiteSettings, tier: str) -> dict[str, float]:
        """Each task's primary metric for a random model."""


SUITES: dict[str, Suite] = {"synthetic10": Synthetic10(), "paper10": Paper10()}  # the first is the default
