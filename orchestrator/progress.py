"""What a person watches during a sweep: a live table of trials (or one line per event in logs)."""

from __future__ import annotations

import math
from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .keys import SCORE
from .search import overrides_of
from .spec import SweepSpec
from .tune import end_status, trial_label


def describe_overrides(overrides: dict[str, Any], width: int = 60) -> str:
    """`{"objective.logit_transform": "sine", ...}` -> "logit_transform=sine ..." (short, for tables)."""
    if not overrides:
        return "(baseline)"
    parts = [f"{k.split('.', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.', 1)[1]}={v}" for k, v in overrides.items()]
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


class SweepProgress(tune.Callback):
    """Trials running / done / stopped early / failed and the best score so far.

    On a terminal: a live table. Elsewhere (`ray job submit` logs, CI): one line per trial event.
    """

    def __init__(self, spec: SweepSpec, console: Console) -> None:
        self.spec = spec
        self.console = console
        self.rows: dict[str, dict[str, Any]] = {}
        self.live = Live(console=console, auto_refresh=False, transient=False) if console.is_terminal else None

    # Tune pickles its callbacks into the experiment state; a console and a live display hold
    # locks, and only this process draws on them.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "console": None, "live": None}

    def setup(self, **info: Any) -> None:
        if self.live is not None:
            self.live.start()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        overrides = overrides_of(trial.config)
        self.rows[trial.trial_id] = {
            "name": trial_label(trial), "epoch": 0,
            "what": describe_overrides(overrides, width=60 if self.live is not None else 1000),  # a log line: all of it
            "score": math.nan, "status": "running", "planned": self.spec.config_for(overrides).optim.epochs,
            "overrides": overrides,
        }  # fmt: skip
        self._show(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        row = self.rows.get(trial.trial_id)
        if row is not None:
            row["epoch"] = result.get("epoch", row["epoch"])
            row["score"] = result.get(SCORE, row["score"])
            self._show(trial.trial_id, event=False)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        row = self.rows.get(trial.trial_id)
        if row is not None:
            row["status"] = end_status(self.spec, row["overrides"], row["epoch"])
            self._show(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        row = self.rows.get(trial.trial_id)
        if row is not None:
            row["status"] = "failed"
            self._show(trial.trial_id)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self.live is not None:
            self.live.update(self.table(), refresh=True)
            self.live.stop()
            self.live = None

    def table(self) -> Table:
        counts = {s: sum(r["status"] == s for r in self.rows.values()) for s in ("running", "completed", "stopped_early", "failed")}
        scored = [r for r in self.rows.values() if not math.isnan(r["score"])]
        best = max(scored, key=lambda r: r["score"], default=None)
        title = (
            f"{self.spec.name}: {counts['running']} running · {counts['completed']} done · "
            f"{counts['stopped_early']} stopped early · {counts['failed']} failed · "
            f"{self.spec.search.num_samples - len(self.rows)} pending"
            + (f" · best {best['score']:.3f} ({best['name']})" if best else "")
        )
        table = Table(title=title, title_justify="left")
        for column in ("trial", "config", "epoch", "score", "status"):
            table.add_column(column, justify="right" if column in ("epoch", "score") else "left")
        for r in sorted(self.rows.values(), key=lambda r: r["name"]):
            score = "" if math.isnan(r["score"]) else f"{r['score']:.3f}"
            table.add_row(r["name"], r["what"], f"{r['epoch']}/{r['planned']}", score, r["status"])
        return table

    def _show(self, trial_id: str, event: bool = True) -> None:
        if self.live is not None:
            self.live.update(self.table(), refresh=True)
        elif event:
            r = self.rows[trial_id]
            score = "" if math.isnan(r["score"]) else f" score {r['score']:.3f}"
            self.console.print(f"{r['name']} {r['status']:<13} epoch {r['epoch']}/{r['planned']}{score}  {r['what']}", soft_wrap=True)
