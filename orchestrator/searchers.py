"""Search algorithms by name: the `search:` section and the Optuna sampler each name stands for.

A new algorithm is one entry of `ALGORITHMS` (an Optuna sampler built from the search seed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import optuna

from clipsweep.trainers.typed import Section


@dataclass(frozen=True)
class Algorithm:
    """What `search.algorithm` names: the Optuna sampler the study asks, and whether the searcher
    enumerates the `choice` combinations of the space first and then ends (grid)."""

    sampler: Callable[[int], optuna.samplers.BaseSampler]
    enumerates: bool = False


ALGORITHMS: dict[str, Algorithm] = {
    "tpe": Algorithm(lambda seed: optuna.samplers.TPESampler(seed=seed)),
    "random": Algorithm(lambda seed: optuna.samplers.RandomSampler(seed=seed)),
    # every combination of the choices (conditions included) queued on the study, in order; the
    # sampler then only fills what the queue leaves open, which a grid of choices never does
    "grid": Algorithm(lambda seed: optuna.samplers.RandomSampler(seed=seed), enumerates=True),
}
SearchAlgorithm = Literal[tuple(ALGORITHMS)]  # type: ignore[valid-type]


@dataclass(frozen=True)
class SearchSettings(Section):
    """The searcher: its algorithm (an entry of `ALGORITHMS`), how many trials (baseline
    included), its seed, and how many run at once.

    tpe: Optuna's TPE; random: Optuna's random sampler; grid: every combination of the `choice`
    fields, in order (conditional fields included), queued on the study and handed out once each.
    """

    section = "search"
    algorithm: SearchAlgorithm = "tpe"
    num_samples: int = 8
    seed: int = 0
    max_concurrent: int | None = None  # None: as many as the cluster's resources allow

    def _validate(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"search.num_samples={self.num_samples}; allowed: >= 1 (the baseline counts as one)")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"search.max_concurrent={self.max_concurrent}; allowed: >= 1 or null")
