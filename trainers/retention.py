"""Which of a trial's checkpoints stay on storage: a sweep spec's `checkpoints.keep`.

`best_and_latest` keeps the latest checkpoint (what a restarted or resumed trial continues from)
and the best by the search score, `bench/mean_primary` (what the finalists are scored again
from): at most 2 per trial, however many epochs it trains. `all` keeps every epoch's. The
per-epoch metrics stay in Tune's `result.json` and in MLflow either way.

Ties go to the later epoch, as Ray Train ranks checkpoints under `CheckpointConfig(num_to_keep=1,
checkpoint_score_attribute=SCORE_METRIC)`, so a TorchTrainer trial and a trial trained in its
Tune actor keep the same two, and the sweep's tracker names the same one best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

KeepPolicy = Literal["best_and_latest", "all"]
SCORE_METRIC = "bench/mean_primary"  # the search score of an epoch (the sweep's `score`)


def is_better(score: float | None, best: float | None) -> bool:
    """Whether a later epoch scoring `score` takes over from `best` (None: no best yet) as the
    best checkpoint. A missing or NaN score never does."""
    return score is not None and math.isfinite(score) and (best is None or score >= best)


def best_epoch(scores: Mapping[int, float | None]) -> int | None:
    """The epoch of the best checkpoint among `scores` ({epoch: score}); None if none scored."""
    best, best_score = None, None
    for epoch in sorted(scores):
        if is_better(scores[epoch], best_score):
            best, best_score = epoch, scores[epoch]
    return best


def kept_epochs(scores: Mapping[int, float | None], keep: KeepPolicy) -> set[int]:
    """The epochs among `scores` ({epoch: score} of the stored checkpoints) whose checkpoints stay."""
    if keep == "all" or not scores:
        return set(scores)
    best = best_epoch(scores)
    return {max(scores)} | ({best} if best is not None else set())
