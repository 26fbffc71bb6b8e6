"""The leaderboard's finalists: chosen from the sweep's trials, trained again with other seeds,
and every run re-scored on the full tier.

The top trials by cheap-tier score (what ASHA and Optuna saw) plus the baseline are the
variants. Each is trained `leaderboard.seeds` times in all (seeds `optim.seed + i`; its search
run is seed `optim.seed` when it trained all its epochs), so the ranking sees training noise.
Every run is evaluated again from its best checkpoint (the `checkpoint` artifact of its MLflow
child run) on the suite's full tier, one Ray task each, as many at once as the cluster has room
for. Each task returns the metrics and every benchmark's primary metric per item.
"""

from __future__ import annotations

import dataclasses
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
from .tune import REPLICATE_KEY, SEED_FIELD


@dataclass(frozen=True)
class Finalist:
    """A trained run that goes on the leaderboard: a variant's search trial, or a seed replicate."""

    name: str  # the run's label (its MLflow child run name)
    run_id: str
    role: str  # baseline | point | search | replicate
    overrides: dict[str, Any]
    cheap_score: float
    status: str
    seed: int = 0  # the run's optim.seed
    variant: str = ""  # the finalist a replicate is a seed of ("" for a variant's own search trial)

    @property
    def of(self) -> str:
        """The variant this run is a seed of."""
        return self.variant or self.name


@dataclass(frozen=True)
class Selection:
    finalists: list[Finalist]  # the variants (their search trials), reference first
    reference: str  # the finalist everything is compared with
    note: str | None  # set when the reference is not the baseline, and why
    replicates: tuple[Finalist, ...] = ()  # completed seed replicates of the finalists
    seeds: int = 1  # runs per variant the leaderboard asked for

    def runs(self) -> list[Finalist]:
        """Every run that is scored: each variant's search trial if it trained all its epochs, and
        its completed replicates."""
        return [f for f in self.finalists if f.status == "completed"] + list(self.replicates)

    def runs_of(self, variant: str) -> list[Finalist]:
        return [r for r in self.runs() if r.of == variant]


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
    top = completed[completed["role"].isin(["point", "search"])].head(n)
    baseline = scored[(scored["role"] == "baseline") & scored["status"].isin(["completed", "stopped_early"])]
    chosen = pd.concat([baseline.head(1), top])
    note = None
    if baseline.empty:
        row = trials[trials["role"] == "baseline"]
        why = f"{row.iloc[0]['status']}" + (f" ({row.iloc[0]['failure_reason']})" if row.iloc[0]["failure_reason"] else "") if len(row) else "missing"
        if top.empty:
            raise ValueError(f"the baseline is {why} and no other trial completed; nothing to rank")
        note = f"The baseline trial is {why}: everything is normalised against {top.iloc[0]['name']}, the best completed trial."
    finalists = [_run(r) for _, r in chosen.iterrows()]
    return Selection(finalists, finalists[0].name, note)


def _run(row: pd.Series) -> Finalist:
    """A row of `SweepResult.trials()` as a Finalist (pandas turns a missing tag into NaN)."""
    seed, variant = row.get("seed"), row.get(REPLICATE_KEY)
    return Finalist(
        row["name"], row["run_id"], row["role"], row["overrides"], float(row["score"]), row["status"],
        int(seed) if isinstance(seed, (int, float)) and math.isfinite(seed) else 0, variant if isinstance(variant, str) else "",
    )  # fmt: skip


def with_replicates(selection: Selection, trials: pd.DataFrame, seeds: int) -> Selection:
    """The selection with its finalists' completed seed replicates (rows of role `replicate`)."""
    names = {f.name for f in selection.finalists}
    done = trials[(trials["role"] == "replicate") & (trials["status"] == "completed")] if len(trials) else trials
    replicates = tuple(_run(r) for _, r in done.iterrows() if r[REPLICATE_KEY] in names)
    return dataclasses.replace(selection, replicates=replicates, seeds=seeds)


def replicate_configs(selection: Selection, spec: SweepSpec, trials: pd.DataFrame) -> list[dict[str, Any]]:
    """Tune configs of the replicates still to train: each finalist up to `leaderboard.seeds`
    runs, seeds `optim.seed + i`; its search trial is seed + 0 when it trained all its epochs,
    and a replicate that already completed (a resumed sweep) is not trained again."""
    done = {(r.of, r.seed) for r in with_replicates(selection, trials, spec.leaderboard.seeds).replicates}
    configs = []
    for f in selection.finalists:
        base = spec.config_for(f.overrides).optim.seed
        first = 1 if f.status == "completed" else 0
        for seed in range(base + first, base + spec.leaderboard.seeds):
            if (f.name, seed) not in done:
                configs.append({"role": "replicate", REPLICATE_KEY: f.name, **f.overrides, SEED_FIELD: seed})
    return configs


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
    suite = spec.suite.with_heldout(data.heldout).to_dict()
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
