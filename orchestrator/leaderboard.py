"""The sweep's leaderboard: finalists' full-tier scores ranked, stored and published to MLflow.

What is kept on the sweep's parent MLflow run, under `leaderboard/`:
- `scores.npz` + `finalists.json`: every scored run's per-item scores and full-tier metrics
  (each finalist's search trial and seed replicates), so
  the ranking can be rebuilt (`clipsweep leaderboard`, `SweepResult.leaderboard()`) without
  evaluating again;
- `leaderboard.csv|md|html`, `leaderboard_heatmap.png`, `leaderboard_forest.png`.
Each scored run's child run gets its full-tier metrics (`full/<task>/<metric>`) and its
variant's `leaderboard/aggregate`, `leaderboard/aggregate_diff_pts`, `leaderboard/p_better`,
`leaderboard/seeds`, `leaderboard/seed_sd_pts`, `leaderboard/mde_pts`, `leaderboard/mean_rank`,
`leaderboard/rank`, and the tags `clipsweep.verdict` (better | worse | equivalent | undecided |
reference) and `clipsweep.pairing`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from clipsweep.trainers.evaluation.metrics import ItemScores
from clipsweep.trainers.evaluation.suite import flatten

from .finalists import Finalist, Selection
from .keys import PAIRING_TAG, VERDICT_TAG
from .progress import describe_overrides
from .ranking import Ranking, rank_variants
from .sections import LeaderboardSettings
from .stores import download
from .tracking import metric_key, rounded

ARTIFACT_DIR = "leaderboard"
SCORES_FILE, FINALISTS_FILE = "scores.npz", "finalists.json"

Scores = dict[str, tuple[dict[str, dict[str, float]], dict[str, ItemScores]]]  # name -> (metrics, items)


@dataclass(frozen=True)
class Leaderboard:
    """A ranked sweep: the ranking, who was ranked, and how.

    Attributes:
        ranking: per-variant numbers (see `ranking.Ranking`).
        selection: the finalists and the reference.
        settings: finalists, seeds, margin, bootstrap resamples, seed, level, alpha.
        extra_notes: more footnotes (the compute spent, from the runs' own timings).
    """

    ranking: Ranking
    selection: Selection
    settings: LeaderboardSettings
    extra_notes: tuple[str, ...] = ()

    @property
    def notes(self) -> tuple[str, ...]:
        extra = (self.selection.note,) if self.selection.note else ()
        ranked = set(self.ranking.frame["variant"])
        asked = self.selection.seeds
        for f in self.selection.finalists:
            n = len(self.selection.runs_of(f.name))
            if f.name not in ranked:
                extra += (f"{f.name}: no completed run to score; not ranked.",)
            elif n < asked:
                how = "paired" if n > 1 and f.name != self.ranking.reference else "ranked"
                extra += (f"{f.name}: {how} on {n} of {asked} seeds (the others failed or did not train all epochs).",)
        return extra + self.ranking.notes + self.extra_notes

    def knobs(self) -> dict[str, str]:
        """Each variant's values that differ from the baseline (`logit_transform=sine omega=1.22`)."""
        return {f.name: describe_overrides(f.overrides, width=1000) for f in self.selection.finalists}

    def frame(self) -> pd.DataFrame:
        """One row per variant, best first: rank, role, knobs, cheap-tier score, then the
        ranking's columns; `.attrs["notes"]` holds the method statement and footnotes."""
        by_name = {f.name: f for f in self.selection.finalists}
        frame = self.ranking.frame.copy()
        frame.insert(0, "rank", np.arange(1, len(frame) + 1))
        frame.insert(2, "role", [by_name[v].role for v in frame["variant"]])
        frame.insert(3, "reference", frame["variant"] == self.ranking.reference)
        frame.insert(4, "knobs", [self.knobs()[v] for v in frame["variant"]])
        frame.insert(5, "cheap_score", [by_name[v].cheap_score for v in frame["variant"]])
        frame.attrs["notes"] = list(self.notes)
        return frame


def rank_scores(selection: Selection, scores: Scores, settings: LeaderboardSettings) -> Leaderboard:
    """Ranks the finalists, each on the per-item scores of all its scored runs (one per seed),
    against the selection's reference; if the reference has no scored run, against the best
    finalist that has one (and every output says so).

    Raises:
        ValueError: no finalist has a scored run.
    """
    items = {  # keyed by seed: the ranking pairs runs by seed, never by order
        f.name: {run.seed: scores[run.name][1] for run in selection.runs_of(f.name) if run.name in scores}
        for f in selection.finalists
    }
    items = {name: runs for name, runs in items.items() if runs}
    if not items:
        raise ValueError("no finalist has a completed run to score; nothing to rank")
    if selection.reference not in items:
        substitute = next(iter(items))
        note = (f"{selection.reference} has no completed run: everything is compared with {substitute}, "
                f"the best completed finalist.")  # fmt: skip
        selection = dataclasses.replace(selection, reference=substitute, note=note)
    benchmarks = list(dict.fromkeys(b for runs in items.values() for per_item in runs.values() for b in per_item))
    return Leaderboard(rank_variants(items, selection.reference, benchmarks, settings.bootstrap), selection, settings)


def save_scores(client: MlflowClient, parent_id: str, selection: Selection, scores: Scores) -> None:
    """Stores the finalists' scores on the parent run (what a rebuild ranks again)."""
    arrays = {
        f"{name}/{bench}/{part}": getattr(s, part)
        for name, (_, items) in scores.items() for bench, s in items.items() for part in ("hits", "counts")
    }  # fmt: skip
    doc = {
        "reference": selection.reference,
        "note": selection.note,
        "finalists": [dataclasses.asdict(f) for f in selection.finalists],
        "replicates": [dataclasses.asdict(f) for f in selection.replicates],
        "seeds": selection.seeds,
        "common_seeds": list(selection.common_seeds),
        "metrics": {name: metrics for name, (metrics, _) in scores.items()},
    }
    with tempfile.TemporaryDirectory() as directory:
        np.savez_compressed(os.path.join(directory, SCORES_FILE), **arrays)
        with open(os.path.join(directory, FINALISTS_FILE), "w") as f:
            json.dump(doc, f, indent=1)
        client.log_artifacts(parent_id, directory, ARTIFACT_DIR)


def load_scores(client: MlflowClient, parent_id: str) -> tuple[Selection, Scores] | None:
    """The stored finalists and scores of a sweep, or None when its leaderboard was never built."""
    stored = {a.path for a in client.list_artifacts(parent_id, ARTIFACT_DIR)}
    if f"{ARTIFACT_DIR}/{SCORES_FILE}" not in stored:
        return None
    with tempfile.TemporaryDirectory() as directory:
        folder = download(client, parent_id, ARTIFACT_DIR, directory)
        with open(os.path.join(folder, FINALISTS_FILE)) as f:
            doc = json.load(f)
        with open(os.path.join(folder, SCORES_FILE), "rb") as f:
            arrays = dict(np.load(io.BytesIO(f.read())))
    selection = Selection(
        [Finalist(**f) for f in doc["finalists"]], doc["reference"], doc["note"],
        tuple(Finalist(**f) for f in doc.get("replicates", ())), doc.get("seeds", 1), tuple(doc.get("common_seeds", ())),
    )  # fmt: skip
    scores: Scores = {}
    for run in selection.runs():
        if run.name not in doc["metrics"]:  # its evaluation failed
            continue
        benches = dict.fromkeys(key.split("/")[1] for key in arrays if key.startswith(f"{run.name}/"))
        items = {b: ItemScores(arrays[f"{run.name}/{b}/hits"], arrays[f"{run.name}/{b}/counts"]) for b in benches}
        scores[run.name] = (doc["metrics"][run.name], items)
    return selection, scores


def log_to_runs(client: MlflowClient, board: Leaderboard, scores: Scores) -> None:
    """Each scored run's child run gets its full-tier metrics and its variant's standing."""
    frame = board.frame().set_index("variant")
    for run in board.selection.runs():
        if run.name not in scores or run.of not in frame.index:
            continue
        row = frame.loc[run.of]
        values: dict[str, Any] = {
            **flatten(scores[run.name][0], prefix="full"),
            "leaderboard/aggregate": row["aggregate"],
            "leaderboard/aggregate_diff_pts": row["aggregate_diff"] * 100,
            "leaderboard/p_better": row["aggregate_p_better"],
            "leaderboard/seeds": row["seeds"],
            "leaderboard/seed_sd_pts": row["aggregate_seed_sd"] * 100,
            "leaderboard/mde_pts": row["aggregate_mde_pts"],
            "leaderboard/mean_rank": row["mean_rank"],
            "leaderboard/rank": row["rank"],
        }
        now = int(time.time() * 1000)
        metrics = [Metric(metric_key(k), rounded(k, float(v)), now, 0) for k, v in values.items() if np.isfinite(v)]
        verdict = "reference" if row["reference"] else row["aggregate_verdict"]
        tags = [RunTag(VERDICT_TAG, verdict), RunTag(PAIRING_TAG, row["pairing"])]
        client.log_batch(run.run_id, metrics=metrics, tags=tags)
