"""The spec's sections about resources, failures, checkpoints and the leaderboard, as typed settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from clipsweep.trainers.retention import KeepPolicy
from clipsweep.trainers.typed import Section, check_range

from .ranking import BootstrapSettings

TrainerName = Literal["auto", "trial_actor", "torch_trainer"]


@dataclass(frozen=True)
class Resources(Section):
    """What one trial reserves: its driver (the Tune trainable) plus its Ray Train workers."""

    section = "resources"
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    driver_cpus: float = 1.0
    # Custom Ray resources the driver also reserves, e.g. {clipsweep_driver: 1} with the head
    # node started with that resource: keeps trial drivers on the head, off the GPU workers.
    driver_resources: dict[str, float] = field(default_factory=dict)
    # Where a trial trains. torch_trainer: a TorchTrainer's workers. trial_actor: the Tune
    # trial's own actor, which then reserves the worker's CPUs/GPUs too (one worker only; it
    # skips Train's controller and worker process, ~12 s of each trial's start-up on 2 cores).
    # auto: trial_actor for one worker unless driver_resources pin drivers away from workers.
    trainer: TrainerName = "auto"

    @property
    def in_trial_actor(self) -> bool:
        """Whether each trial trains inside its Tune actor (no TorchTrainer)."""
        if self.trainer == "auto":
            return self.workers_per_trial == 1 and not self.driver_resources
        return self.trainer == "trial_actor"

    def _validate(self) -> None:
        check_range("resources.workers_per_trial", self.workers_per_trial, 1)
        if self.trainer == "trial_actor" and self.workers_per_trial > 1:
            raise ValueError(
                f"resources.trainer=trial_actor with workers_per_trial={self.workers_per_trial}; allowed: "
                "trial_actor trains one worker (use torch_trainer or auto for more)"
            )
        for name in ("cpus_per_worker", "driver_cpus", "gpus_per_worker"):
            check_range(f"resources.{name}", getattr(self, name), 0.0)
        for name, amount in self.driver_resources.items():
            check_range(f"resources.driver_resources.{name}", amount, 0.0, strict_low=True)


@dataclass(frozen=True)
class FailureSettings(Section):
    """Ray Train's `FailureConfig`: how often a trial's worker group is restarted from its last
    checkpoint after a worker dies (spot node lost, OOM) before the trial counts as failed.
    0 (Ray's default): a failing trial fails at once, as a diverging one should."""

    section = "failure_config"
    max_failures: int = 0

    def _validate(self) -> None:
        if self.max_failures < -1:
            raise ValueError(f"failure_config.max_failures={self.max_failures}; allowed: >= 0, or -1 (retry forever)")


@dataclass(frozen=True)
class CheckpointSettings(Section):
    """`checkpoints: {keep: best_and_latest}`: which checkpoints each trial keeps on storage.
    best_and_latest: the latest (a resumed or restarted trial continues from it) and the best by
    the search score (the finalists are scored again from it), at most 2 per trial; all: every
    epoch's. The per-epoch metrics are kept either way (Tune's result.json, MLflow)."""

    section = "checkpoints"
    keep: KeepPolicy = "best_and_latest"


@dataclass(frozen=True)
class SeedRange(Section):
    """`leaderboard.seeds: {min: 3, max: 10}`: adaptive replicates. Every finalist and the
    baseline get `min` seeds; a finalist whose aggregate is still undecided then gets one more
    common seed at a time (and the baseline with it) until it is decided or has `max`."""

    section = "leaderboard.seeds"
    min: int | None = None
    max: int | None = None

    def _validate(self) -> None:
        if self.min is None or self.max is None or not 2 <= self.min < self.max:
            given = {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}
            raise ValueError(
                f"leaderboard.seeds={given}; allowed: {{min: M, max: N}} with 2 <= M < N (a t interval needs 2 "
                "seeds), or an integer >= 1 for a fixed count"
            )


@dataclass(frozen=True)
class LeaderboardSettings(Section):
    """After the search: the top `finalists` trials by cheap-tier score plus the baseline are
    trained on the common seeds optim.seed + i (a fixed count, or adaptively: `SeedRange`),
    every run is re-evaluated on the full tier, and the variants are ranked, paired by seed,
    over seeds and items (see `ranking.py`)."""

    section = "leaderboard"
    finalists: int = 3
    seeds: int | SeedRange = 3  # 1: one run per variant, and intervals without training noise
    margin_pts: float = 1.0  # equivalence margin: a difference inside +-margin is "no difference"
    resamples: int = 1000
    seed: int = 0
    level: float = 0.95  # interval coverage
    alpha: float = 0.05  # Holm-corrected significance level per variant

    def _validate(self) -> None:
        if self.finalists < 1:
            raise ValueError(f"leaderboard.finalists={self.finalists}; allowed: >= 1 (the baseline is added to them)")
        if isinstance(self.seeds, int) and self.seeds < 1:
            raise ValueError(
                f"leaderboard.seeds={self.seeds}; allowed: an integer >= 1 (runs per variant; 3 or more measure "
                "training noise), or {min: M, max: N} for adaptive seeds"
            )
        check_range("leaderboard.margin_pts", self.margin_pts, 0.0, strict_low=True)
        if self.resamples < 100:
            raise ValueError(f"leaderboard.resamples={self.resamples}; allowed: >= 100 (percentile intervals need them)")
        for name in ("level", "alpha"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"leaderboard.{name}={getattr(self, name)}; allowed: strictly between 0 and 1")

    @property
    def looks(self) -> tuple[int, int] | None:
        """(min, max) seeds of an adaptive race, None for a fixed count."""
        return (self.seeds.min, self.seeds.max) if isinstance(self.seeds, SeedRange) else None  # type: ignore[return-value]

    @property
    def first_seeds(self) -> int:
        """Seeds every finalist gets before any verdict is read (the fixed count, or `min`)."""
        return self.looks[0] if self.looks else self.seeds  # type: ignore[return-value]

    @property
    def max_seeds(self) -> int:
        return self.looks[1] if self.looks else self.seeds  # type: ignore[return-value]

    def describe_seeds(self) -> str:
        return f"{{min: {self.looks[0]}, max: {self.looks[1]}}}" if self.looks else str(self.seeds)

    @property
    def bootstrap(self) -> BootstrapSettings:
        return BootstrapSettings(self.resamples, self.seed, self.level, self.alpha, self.margin_pts / 100, looks=self.looks)
