"""Which knobs mattered: fANOVA importances over the search's completed trials, and a
parallel-coordinates picture of every drawn knob against the final-stage score.

Both read the sweep's Optuna study (`search.load_study`): the trials inside the search space,
each COMPLETE with its last final-stage score or PRUNED (stopped by ASHA) with its last
intermediate one. Importances use only the COMPLETE trials, as Optuna's dashboard does; with
fewer than `MIN_COMPLETE` of them a random forest fits noise, so none are given.
"""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")  # files only; a sweep may run with no display

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

MIN_COMPLETE = 8  # completed trials below which importances are not given
IMPORTANCE_PNG, PARALLEL_PNG = "param_importance.png", "param_parallel.png"


def param_importances(study: optuna.Study | None, seed: int = 0) -> pd.Series:
    """fANOVA importance of each knob drawn in every completed trial (shares summing to 1),
    largest first; empty, with the reason in `.attrs["note"]`, when there are too few trials."""
    complete = [] if study is None else study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    series = pd.Series(dtype=float, name="importance")
    if len(complete) < MIN_COMPLETE:
        series.attrs["note"] = (
            f"importances not given: {len(complete)} completed trial{'s' if len(complete) != 1 else ''} in the "
            f"search space, fewer than the {MIN_COMPLETE} a random-forest fANOVA needs to say more than noise"
        )
        return series
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
    series = pd.Series(scores, dtype=float, name="importance").sort_values(ascending=False)
    series.attrs["note"] = (
        f"fANOVA over {len(complete)} completed trials; knobs drawn in only some of them (conditional) are left out"
    )
    return series


def plot_importances(importances: pd.Series, path: str) -> str:
    """A horizontal bar chart of the importances (or the reason there are none)."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(importances), 3) + 1.2))
    if importances.empty:
        ax.text(0.5, 0.5, importances.attrs.get("note", "no importances"), ha="center", va="center", wrap=True, fontsize=10)
        ax.set_axis_off()
    else:
        ordered = importances.iloc[::-1]
        ax.barh(ordered.index, ordered.to_numpy(), color="#0969da")
        for y, value in enumerate(ordered.to_numpy()):
            ax.text(value, y, f" {value:.2f}", va="center", fontsize=9)
        ax.set_xlim(0, min(1.0, ordered.max() * 1.25))
        ax.set_xlabel("share of the final-stage score's variance (fANOVA)")
    ax.set_title("Which knobs mattered", loc="left")
    if not importances.empty:  # the note says how they were computed; without bars it is the message itself
        fig.text(0.01, 0.01, importances.attrs.get("note", ""), fontsize=7, color="#57606a")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_parallel(study: optuna.Study | None, path: str) -> str:
    """One vertical axis per drawn knob and one for the score; one line per trial, coloured by
    its score; trials the scheduler stopped dashed at their last score; knobs a trial did not draw
    (conditional) at 'n/a' below the axis."""
    trials = [] if study is None else study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    trials = [t for t in trials if t.value is not None or t.intermediate_values]
    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    for t in trials:
        distributions.update(t.distributions)
    names = sorted(distributions)
    fig, ax = plt.subplots(figsize=(max(6, 1.7 * (len(names) + 1)), 4.8))
    if not trials:
        ax.text(0.5, 0.5, "no trial of the search space reported a final-stage score", ha="center", va="center")
        ax.set_axis_off()
    else:
        scores = np.array([_score(t) for t in trials])
        low, high = float(np.nanmin(scores)), float(np.nanmax(scores))
        colour = plt.get_cmap("viridis")
        for t, score in zip(trials, scores):
            ys = [_position(distributions[n], t.params.get(n)) for n in names] + [_unit(score, low, high)]
            ax.plot(range(len(names) + 1), ys, color=colour(_unit(score, low, high)), alpha=0.85,
                    linestyle="-" if t.state == TrialState.COMPLETE else "--", linewidth=1.4)  # fmt: skip
        for x, name in enumerate(names):
            ax.axvline(x, color="#8c959f", linewidth=0.8)
            for y, label in _ticks(distributions[name]):
                ax.text(x + 0.03, y, label, fontsize=7, va="center", color="#24292f")
        ax.axvline(len(names), color="#8c959f", linewidth=0.8)
        for y in (0.0, 0.5, 1.0):
            ax.text(len(names) + 0.03, y, f"{low + y * (high - low):.3f}", fontsize=7, va="center")
        ax.set_xticks(range(len(names) + 1), [n.split(".", 1)[1] for n in names] + ["final-stage score"], fontsize=8)
        ax.set_yticks([])
        ax.set_ylim(-0.2, 1.08)
        ax.set_xlim(-0.1, len(names) + 0.5)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        ax.set_title(f"Knobs against the score: {complete} completed (solid), {len(trials) - complete} stopped early by the scheduler (dashed)",
                     loc="left", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_importance(study: optuna.Study | None, folder: str) -> dict[str, str]:
    """importance.csv and the two PNGs in `folder`; returns {picture title: path}."""
    os.makedirs(folder, exist_ok=True)
    importances = param_importances(study)
    importances.rename_axis("knob").to_frame().to_csv(os.path.join(folder, "param_importance.csv"))
    return {
        "Which knobs mattered (fANOVA)": plot_importances(importances, os.path.join(folder, IMPORTANCE_PNG)),
        "Knobs against the final-stage score": plot_parallel(study, os.path.join(folder, PARALLEL_PNG)),
    }


def _score(trial: optuna.trial.FrozenTrial) -> float:
    if trial.value is not None:
        return trial.value
    return trial.intermediate_values[max(trial.intermediate_values)]


def _unit(value: float, low: float, high: float) -> float:
    return 0.5 if high <= low else (value - low) / (high - low)


def _position(dist: optuna.distributions.BaseDistribution, value: object) -> float:
    """Where a value sits on its knob's axis, in [0, 1]; -0.12 ('n/a') when not drawn."""
    if value is None:
        return -0.12
    if isinstance(dist, CategoricalDistribution):
        return _unit(dist.choices.index(value), 0, len(dist.choices) - 1) if len(dist.choices) > 1 else 0.5
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    if dist.log:
        return _unit(math.log(value), math.log(dist.low), math.log(dist.high))  # type: ignore[arg-type]
    return _unit(value, dist.low, dist.high)  # type: ignore[arg-type]


def _ticks(dist: optuna.distributions.BaseDistribution) -> list[tuple[float, str]]:
    ticks = [(-0.12, "n/a")]
    if isinstance(dist, CategoricalDistribution):
        return ticks + [(_position(dist, c), str(c)) for c in dist.choices]
    return ticks + [(_position(dist, v), f"{v:.3g}") for v in (dist.low, dist.high)]  # type: ignore[attr-defined]
