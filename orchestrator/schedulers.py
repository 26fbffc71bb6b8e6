"""Trial schedulers by name: each one's settings section, its Tune scheduler, and how far it lets a trial train.

`scheduler: {name: asha, grace_period: 1}` in a spec picks the entry `asha` of `SCHEDULERS`
and builds its settings class from the other fields, so a setting the chosen scheduler does not
read is refused as unknown (`scheduler: {name: none, grace_period: 2}` acts on nothing). A new
scheduler is one settings class here with `name`, `check`, `horizon`, `build` and `describe`,
added to `SCHEDULERS` (docs/architecture.md).

`horizon` is the final-stage epochs after which the scheduler lets no trial train on; a trial
that reaches it counts as completed (`SweepSpec.full_fidelity`). ASHA's clock is the final
stage's epoch (`keys.FINAL_STAGE_EPOCH`): a two-stage trial's stage 1 scores an image tower
against a frozen text tower, which no other trial's scores compare with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from clipsweep.trainers.typed import Section, build, check_range, unknown_field

from .keys import FINAL_STAGE_EPOCH, FINAL_STAGE_SCORE


class SparingBaselineAsha(ASHAScheduler):
    """ASHA that never stops the baseline early: it is the reference every leaderboard entry is
    normalised against, so it trains all its epochs. Its results still fill the rungs that the
    other trials are compared at."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        at_end = result.get(self._time_attr, 0) >= self._max_t
        if trial.config.get("role") == "baseline" and not at_end:
            return TrialScheduler.CONTINUE
        return decision


@dataclass(frozen=True)
class AshaSettings(Section):
    """asha: Ray Tune's ASHA on the final-stage cheap-tier score, in final-stage epochs; a trial
    that reaches `max_t` of them is complete."""

    section = "scheduler"
    name: ClassVar[str] = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: int | None = None  # None: the trial config's optim.epochs

    def _validate(self) -> None:
        check_range("scheduler.grace_period", self.grace_period, 1)
        check_range("scheduler.reduction_factor", self.reduction_factor, 1.0, strict_low=True)

    def check(self, epochs: int) -> None:
        """Cross-field checks against the trial config's `optim.epochs`."""
        if self.max_t is not None and not 1 <= self.max_t <= epochs:
            raise ValueError(f"scheduler.max_t={self.max_t}; allowed: 1 to trial.optim.epochs={epochs}")
        if self.grace_period > self.horizon(epochs):
            raise ValueError(f"scheduler.grace_period={self.grace_period}; allowed: 1 to max_t={self.horizon(epochs)}")

    def horizon(self, epochs: int) -> int:
        """Final-stage epochs after which no trial trains on (`max_t`)."""
        return self.max_t or epochs

    def build(self, epochs: int) -> TrialScheduler:
        return SparingBaselineAsha(
            time_attr=FINAL_STAGE_EPOCH,
            metric=FINAL_STAGE_SCORE,
            mode="max",
            max_t=self.horizon(epochs),
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
        )

    def describe(self, epochs: int) -> str:
        return (
            f"ASHA (grace_period {self.grace_period}, reduction_factor {self.reduction_factor:g}, "
            f"max_t {self.horizon(epochs)} final-stage epochs)"
        )


@dataclass(frozen=True)
class NoScheduler(Section):
    """none: every trial trains all its epochs (Tune's FIFO order)."""

    section = "scheduler"
    name: ClassVar[str] = "none"

    def check(self, epochs: int) -> None:
        """Nothing to check: no settings."""

    def horizon(self, epochs: int) -> int:
        return epochs

    def build(self, epochs: int) -> TrialScheduler | None:
        return None

    def describe(self, epochs: int) -> str:
        return "no scheduler (every trial trains all its epochs)"


SchedulerSettings = AshaSettings | NoScheduler
SCHEDULERS: dict[str, type[SchedulerSettings]] = {s.name: s for s in (AshaSettings, NoScheduler)}


def scheduler_settings(doc: dict[str, Any] | None) -> SchedulerSettings:
    """The `scheduler:` section: `name` picks the entry, the other fields are its settings.

    Raises:
        ValueError: an unknown name, or a field the named scheduler does not read.
    """
    doc = dict(doc or {})
    name = doc.pop("name", "asha")
    if not isinstance(name, str) or name not in SCHEDULERS:
        raise ValueError(f"scheduler.name={name!r}; allowed: {', '.join(SCHEDULERS)}")
    cls = SCHEDULERS[name]
    readable = [f.name for f in fields(cls)]
    for key in doc:
        others = [n for n, c in SCHEDULERS.items() if key in {f.name for f in fields(c)}]
        if key in readable:
            continue
        if not others:
            raise ValueError(unknown_field(f"scheduler.{key}", ["name", *readable]))
        raise ValueError(
            f"scheduler.{key}={doc[key]!r} acts on nothing under scheduler.name={name!r} (a setting of "
            f"{', '.join(others)}); allowed under {name}: {', '.join(readable) or 'no other field'}"
        )
    return build(cls, doc, "scheduler")


def scheduler_doc(settings: SchedulerSettings) -> dict[str, Any]:
    """The section as its YAML mapping (what `scheduler_settings` reads back)."""
    return {"name": settings.name, **{f.name: getattr(settings, f.name) for f in fields(settings)}}
