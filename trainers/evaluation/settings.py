"""Which benchmark suite scores a model, and where its data lies: the spec's `suite:` section.

One frozen `SuiteSettings` serves the spec, `clipsweep train`, the train loop (it travels to Ray
workers as a plain dict) and the paper10 loader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ..typed import Section, build, unknown_field
from .suites import SUITES

SuiteName = Literal[tuple(SUITES)]  # type: ignore[valid-type]


@dataclass(frozen=True)
class SuiteSettings(Section):
    """The benchmark suite a trial is scored on each epoch (tier `cheap` is what ASHA sees)."""

    section = "suite"
    name: SuiteName = "synthetic10"
    tier: Literal["cheap", "full"] = "cheap"
    roots: dict[str, str] = field(default_factory=dict)  # paper10: dataset name -> local root; absent = skipped
    cheap_size: int = 500  # paper10 cheap tier: classification items per dataset (class-stratified)
    cheap_retrieval_size: int = 200  # paper10 cheap tier: retrieval images per dataset
    seed: int = 0  # paper10 cheap tier: which items the subsets draw
    heldout: str | None = None  # synthetic10: the corpus' held-out split (set from `data:`, not in `suite:`)

    def _validate(self) -> None:
        for name in ("cheap_size", "cheap_retrieval_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"suite.{name}={getattr(self, name)}; allowed: an integer >= 1")

    @classmethod
    def from_section(cls, doc: Any, path: str = "suite") -> SuiteSettings:
        """The settings a YAML `suite:` mapping (or None) names; `ValueError` names a bad field."""
        if isinstance(doc, dict):
            if "heldout" in doc:
                raise ValueError(f"{path}.heldout is not a suite field; the held-out split is data.heldout")
            allowed = sorted(f.name for f in dataclasses.fields(cls) if f.name != "heldout")
            if unknown := sorted(set(map(str, doc)) - set(allowed)):
                raise ValueError(unknown_field(f"{path}.{unknown[0]}", allowed))
        return build(cls, {} if doc is None else doc, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuiteSettings:
        """Back from `to_dict` (how the settings reach a Ray worker)."""
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_heldout(self, heldout: str | None) -> SuiteSettings:
        """These settings scoring synthetic10 on `heldout` (known once the data is built)."""
        return dataclasses.replace(self, heldout=heldout)

    def check(self, images: bool = True) -> None:
        """Raises `ValueError` naming the field when the suite cannot be loaded as configured.

        Args:
            images: also check that every test image of every paper10 split is a file (one
                stat per image; the preflight does it once, a trial need not again).
        """
        SUITES[self.name].check(self, images)

    def skipped(self) -> list[str]:
        """The suite's benchmarks left out by these settings (reported, never silently dropped)."""
        return SUITES[self.name].skipped(self)

    def skipped_note(self) -> str | None:
        """The line a run prints about paper10 datasets left out (none configured for them)."""
        skipped = self.skipped()
        return f"paper10: skipped (no root configured): {', '.join(skipped)}" if skipped else None
