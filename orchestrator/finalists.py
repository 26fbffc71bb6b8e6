"""The leaderboard's finalists: chosen from the sweep's trials, re-scored on the full tier.

The top trials by cheap-tier score (what ASHA and Optuna saw) plus the baseline are evaluated
again from their best checkpoints (the `checkpoint` artifact of their MLflow child runs) on the
suite's full tier, one Ray task each, as many at once as the cluster has room for. Each task
returns the metrics and every benchmark's primary metric per item, which the bootstrap resamples.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import ray
from mlflow.tracking import MlflowClient

from clipsweep.trainers.evaluation.finalist import evaluate_weights, load_weights
from clipsweep.trainers.evaluation.metrics import ItemScores

from .spec import SweepSpec
from .trial import TrialData


@dataclass(frozen=True)
class Finalist:
    """A trial that goes on the leaderboard."""

    name: str  # the trial's label (its MLflow child run name)
    run_id: str
    role: str  # baseline | point | search
    overrides: dict[str, Any]
    cheap_score: float
    status: str


@dataclass(frozen=True)
class Selection:
    finalists: list[Finalist]
    reference: str  # the finalist everything is normalised against
    note: str | None  # set when the reference is not the baseline, and why


def choose_finalists(trials: pd.DataFrame, n: int) -> Selection:
    """The `n` best trials that trained all their epochs, by cheap-tier score, plus the baseline.

    The baseline is the reference. If it failed or has no score, the best finalist is, and the
    selection says so.

    Raises:
        ValueError: no trial finished with a score (nothing to rank).
    """
    scored = trials[trials["score"].map(lambda s: s is not None and not math.isnan(s))]
    if scored.empty:
        raise ValueError("no trial finished with a score; nothing to rank (see each trial's status in MLflow)")
    completed = scored[scored["status"] == "completed"].sort_values("score", ascending=False)
    top = completed[completed["role"] != "baseline"].head(n)
    baseline = scored[(scored["role"] == "baseline") & scored["status"].isin(["completed", "stopped_early"])]
    chosen = pd.concat([baseline.head(1), top])
    note = None
    if baseline.empty:
        row = trials[trials["role"] == "baseline"]
        why = f"{row.iloc[0]['status']}" + (f" ({row.iloc[0]['failure_reason']})" if row.iloc[0]["failure_reason"] else "") if len(row) else "missing"
        if top.empty:
            raise ValueError(f"the baseline is {why} and no other trial completed; nothing to rank")
        note = f"The baseline trial is {why}: everything is normalised against {top.iloc[0]['name']}, the best completed trial."
    finalists = [
        Finalist(r["name"], r["run_id"], r["role"], r["overrides"], float(r["score"]), r["status"])
        for _, r in chosen.iterrows()
    ]
    reference = finalists[0].name
    return Selection(finalists, reference, note)


def evaluate_finalists(
    client: MlflowClient,
    spec: SweepSpec,
    data: TrialData,
    finalists: list[Finalist],
    on_done: Callable[[Finalist, dict[str, dict[str, float]]], None] | None = None,
) -> dict[str, tuple[dict[str, dict[str, float]], dict[str, ItemScores]]]:
    """Full-tier metrics and per-item scores of each finalist: {name: (results, items)}.

    Each finalist's weights go to its task through the object store, so the task may run on any
    node that has the suite's data; its resources are one trial worker's.
    """
    r = spec.resources
    task = ray.remote(evaluate_weights).options(num_cpus=r.cpus_per_worker, num_gpus=r.gpus_per_worker)
    suite = spec.suite.settings(data.heldout).to_dict()
    pending: dict[Any, Finalist] = {}
    for finalist in finalists:
        with tempfile.TemporaryDirectory() as directory:
            weights = load_weights(client.download_artifacts(finalist.run_id, "checkpoint", directory))
        cfg = spec.config_for(finalist.overrides)
        tokenizer_dir = cfg.model.tokenizer_dir(data.tokenizer_dir)
        pending[task.remote(cfg.to_dict(), weights, suite, tokenizer_dir, "full")] = finalist
    scored: dict[str, tuple[dict[str, dict[str, float]], dict[str, ItemScores]]] = {}
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        finalist = pending.pop(done)
        scored[finalist.name] = ray.get(done)
        if on_done is not None:
            on_done(finalist, scored[finalist.name][0])
    return {f.name: scored[f.name] for f in finalists}
