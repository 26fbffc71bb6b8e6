"""The leaderboard's finalists: chosen from the sweep's trials, trained again with other seeds,
and every run re-scored on the full tier.

The top trials by cheap-tier score (what ASHA and Optuna saw) plus the baseline are the
variants. Each is trained on the common seeds `s0 + i` (s0: the baseline's `optim.seed`), so
replicate i of every variant shares initial weights, data order, crops and caption draws with
the baseline's, and the ranking pairs them by seed. A search run counts as one of them only when
it trained all its epochs with a common seed (a variant whose `optim.seed` was searched or set
in a point is trained again on the common seeds).
Every run is evaluated again from its best checkpoint (where its MLflow child run's reference
points, or its copy there: `checkpoint_refs.py`) on the suite's full tier, one Ray task each, as many at once as the cluster has room
for. Each task returns the metrics and every benchmark's primary metric per item.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import ray
from mlflow.tracking import MlflowClient

from clipsweep.trainers.evaluation.finalist import evaluate_weights, load_weights
from clipsweep.trainers.evaluation.metrics import ItemScores

from .checkpoint_refs import best_checkpoint
from .keys import REPLICATE_KEY, SEED_FIELD
from .ranking import Ranking
from .spec import SweepSpec
from .trial_data import TrialData


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
    seeds: int = 1  # runs per variant the leaderboard asked for (an adaptive race's minimum)
    common_seeds: tuple[int, ...] = ()  # the seeds a run may have to be ranked (empty: any)

    def runs(self) -> list[Finalist]:
        """Every run that is scored: each variant's search trial if it trained all its epochs, and
        its completed replicates, on the common seeds."""
        runs = [f for f in self.finalists if f.status == "completed"] + list(self.replicates)
        return [r for r in runs if not self.common_seeds or r.seed in self.common_seeds]

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


def common_seeds(spec: SweepSpec, count: int) -> tuple[int, ...]:
    """The first `count` common seeds: the baseline's `optim.seed` + 0, 1, ..."""
    return tuple(spec.baseline.optim.seed + i for i in range(count))


def with_replicates(selection: Selection, trials: pd.DataFrame, spec: SweepSpec) -> Selection:
    """The selection with its finalists' completed seed replicates (rows of role `replicate`),
    ranked on the common seeds up to `leaderboard.seeds` (or its adaptive max)."""
    names = {f.name for f in selection.finalists}
    done = trials[(trials["role"] == "replicate") & (trials["status"] == "completed")] if len(trials) else trials
    replicates = tuple(_run(r) for _, r in done.iterrows() if r[REPLICATE_KEY] in names)
    board = spec.leaderboard
    return dataclasses.replace(
        selection, replicates=replicates, seeds=board.first_seeds, common_seeds=common_seeds(spec, board.max_seeds)
    )


def replicate_configs(
    selection: Selection, spec: SweepSpec, trials: pd.DataFrame, wanted: dict[str, int]
) -> list[dict[str, Any]]:
    """Tune configs of the replicates still to train: each finalist f on the first `wanted[f]`
    common seeds it has no run of. A search run with a common seed that trained all its
    epochs counts; a replicate that completed or failed (a resumed sweep, an earlier round of
    a race) is not trained again (a failed one leaves its variant on fewer common seeds)."""
    tried = trials[(trials["role"] == "replicate") & trials["status"].isin(["completed", "failed"])] if len(trials) else trials
    have = {(r[REPLICATE_KEY], int(r["seed"])) for _, r in tried.iterrows()}
    have |= {(f.name, f.seed) for f in selection.finalists if f.status == "completed"}
    return [
        {"role": "replicate", REPLICATE_KEY: f.name, **f.overrides, SEED_FIELD: seed}
        for f in selection.finalists for seed in common_seeds(spec, wanted.get(f.name, 0)) if (f.name, seed) not in have
    ]  # fmt: skip


def next_seeds(ranking: Ranking, wanted: dict[str, int], most: int) -> tuple[list[str], dict[str, int]]:
    """One step of an adaptive race: the finalists whose aggregate is undecided with fewer than
    `most` seeds wanted, and the seeds wanted next (one more each; the reference as many as the
    most any finalist wants, so that every new seed has its pair)."""
    verdicts = ranking.frame.set_index("variant")["aggregate_verdict"]
    racing = [name for name, verdict in verdicts.items() if verdict == "undecided" and wanted.get(name, most) < most]
    after = {name: count + (name in racing) for name, count in wanted.items()}
    after[ranking.reference] = max(after.values())
    return racing, after


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
        with best_checkpoint(client, finalist.run_id) as directory:
            weights = load_weights(directory)
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
