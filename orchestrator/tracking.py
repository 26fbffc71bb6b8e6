"""MLflow records of a sweep: one parent run, one child run per trial, one writer.

`MlflowTracker` is a Tune callback, so it runs in the Tune driver process and is the only
thing that writes to the tracking store: trials never talk to MLflow. Tune calls callbacks one
at a time from its event loop, so even a SQLite store (`sqlite:///mlruns.db`) sees one writer
and never "database is locked". With an `http://` tracking URI the same calls go to an MLflow
server. All writes go through `MlflowClient` with explicit run ids (no global active run).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from typing import Any

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.experiment import Trial

from clipsweep.trainers.retention import is_better

from .checkpoint_refs import CheckpointCopier, reference_note
from .keys import (
    BEST_CHECKPOINT_TAG,
    CHECKPOINT_PATH_KEY,
    DRIVER_NODE,
    DRIVER_NODE_TAG,
    FINAL_STAGE_EPOCH,
    FINAL_STAGE_SCORE,
    NODES_TAG,
    NOTE_TAG,
    OVERRIDES_TAG,
    PARENT_TAG,
    REASON_TAG,
    REPLICATE_KEY,
    REPLICATE_OF_TAG,
    ROLE_TAG,
    RUN_NAME_TAG,
    SCORE,
    SEED_TAG,
    STATUS_TAG,
    SWEEP_TAG,
    TRAIN_NODES,
    TRIAL_ID_TAG,
    TRIAL_TAG,
)
from .schedulers import scheduler_doc
from .search import overrides_of
from .spec import SweepSpec
from .stores import experiment_id
from .tune import end_status, trial_label

logger = logging.getLogger(__name__)


# Keys Tune adds to every result: bookkeeping, not metrics of the trial.
_TUNE_KEYS = {
    "training_iteration", "time_total_s", "time_this_iter_s", "timestamp", "time_since_restore",
    "iterations_since_restore", "pid", "done", "epoch",
}  # fmt: skip
# ...and the scheduler's copies of `score` (in the final stage) and of the epoch, which the
# runs table would show twice; `clipsweep.final_score` tags the value ASHA and Optuna saw last.
_NOT_METRICS = _TUNE_KEYS | {FINAL_STAGE_SCORE, FINAL_STAGE_EPOCH}
_MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limit
_DETAIL_DIGITS = 4  # per-benchmark metrics: more digits are test-set noise, and crowd the runs table


def failure_reason(error_text: str) -> str:
    """The innermost `SomeError: message` line of a traceback (a worker's, when Train wraps it)."""
    lines = [line.strip() for line in error_text.splitlines()]
    found = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b(: |$)", line)]
    return (found[-1] if found else (lines[-1] if lines else "unknown error"))[:500]


def metric_key(key: str) -> str:
    """A result key as an MLflow metric name, which allows no `@`: `i2t_R@1` -> `i2t_R_at_1`."""
    return re.sub(r"[^\w\-. :/]", "_", key.replace("@", "_at_"))


def rounded(key: str, value: float) -> float:
    """Per-benchmark details (`bench/...`, `full/...`) to 4 digits; other metrics as they are."""
    return round(value, _DETAIL_DIGITS) if key.startswith(("bench/", "full/")) else value


def error_text(trial: Trial) -> str:
    """The trial's traceback. Tune writes it to the driver's staging folder first and syncs it to
    storage later, so `trial.get_error()` (which reads storage) is still empty in the callback."""
    path = trial.error_file
    if path and os.path.exists(path):
        with open(path) as f:
            return f.read()
    error = trial.get_error()
    return str(error) if error is not None else "the trial failed without an error message"


class MlflowTracker(tune.Callback):
    """Writes the sweep's parent run and each trial's child run from the Tune driver.

    Args:
        spec: the sweep (its YAML, search space and trial config become params/artifacts).
        experiment: this launch's name (the parent run's name).
        resources: the resolved resource plan, logged on the parent as params.
    """

    def __init__(
        self, spec: SweepSpec, experiment: str, resources: dict[str, Any] | None = None, parent_id: str | None = None
    ) -> None:
        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.tracking_uri)
        self.children: dict[str, str] = {}  # Tune trial id -> MLflow run id
        self.open: set[str] = set()  # trials whose child run is still RUNNING
        self.best: dict[str, tuple[float, str | None]] = {}  # trial id -> (best score, its checkpoint)
        self.copies = CheckpointCopier()  # `mlflow.copy_checkpoints`: off Tune's event loop
        self.planned: dict[str, int] = {}  # trial id -> epochs its config trains
        self.nodes: dict[str, set[str]] = {}  # trial id -> Ray node ids its Train workers ran on
        self.logged: dict[str, int] = {}  # trial id -> last epoch logged (a resumed trial may repeat one)
        if parent_id is None:
            self.parent_id = self._start_parent(experiment, resources or {})
        else:
            self.parent_id = parent_id
            self._reattach()

    def _start_parent(self, experiment: str, resources: dict[str, Any]) -> str:
        self.experiment_id = experiment_id(self.client, self.spec.name, self.spec.tracking_uri)
        parent = self.client.create_run(
            self.experiment_id, run_name=experiment, tags={SWEEP_TAG: experiment, ROLE_TAG: "sweep", STATUS_TAG: "running"}
        )
        spec = self.spec
        params = {f"resources.{k}": v for k, v in resources.items()}
        params.update({"search.algorithm": spec.search.algorithm, "search.num_samples": spec.search.num_samples,
                       "search.seed": spec.search.seed, "leaderboard.seeds": spec.leaderboard.describe_seeds(),
                       "leaderboard.margin_pts": spec.leaderboard.margin_pts,
                       "leaderboard.finalists": spec.leaderboard.finalists,
                       "suite": f"{spec.suite.name}/{spec.suite.tier}",
                       "failure_config.max_failures": spec.failure_config.max_failures})  # fmt: skip
        # The active scheduler's own settings only (`scheduler: {name: none}` has none).
        params.update({f"scheduler.{k}": v for k, v in scheduler_doc(spec.scheduler).items()})
        if spec.scheduler.name != "none":
            params["scheduler.max_t"] = spec.max_t
        try:
            self._log_params(parent.info.run_id, params)
            self.client.log_dict(parent.info.run_id, spec.search_space_dict(), "search_space.json")
            self.client.log_text(parent.info.run_id, yaml.safe_dump(spec.to_doc(), sort_keys=False), "sweep.yaml")
        except BaseException as e:
            self.parent_id = parent.info.run_id
            self.fail(e)
            raise
        return parent.info.run_id

    def _reattach(self) -> None:
        """Continues a sweep's parent run after `--resume`: what MLflow holds is the truth.

        Tune's saved state can be seconds older than the store (the driver may have died right
        after a trial started or ended), so the children are read back from MLflow: each trial
        keeps its run (no duplicates), and runs left RUNNING stay open until their trial ends or
        the sweep does.
        """
        parent = self.client.get_run(self.parent_id)
        self.experiment_id = parent.info.experiment_id
        self.client.update_run(self.parent_id, status="RUNNING")
        self.client.set_tag(self.parent_id, STATUS_TAG, "running")
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'", max_results=10_000
        )
        for run in runs:
            trial_id, tags = run.data.tags[TRIAL_ID_TAG], run.data.tags
            self.children[trial_id] = run.info.run_id
            self.planned[trial_id] = self.spec.config_for(json.loads(tags.get(OVERRIDES_TAG, "{}"))).optim.epochs
            if run.info.status == "RUNNING":
                self.open.add(trial_id)
            if SCORE in run.data.metrics:
                history = self.client.get_metric_history(run.info.run_id, SCORE)
                self.best[trial_id] = (max(m.value for m in history), tags.get(BEST_CHECKPOINT_TAG))
                self.logged[trial_id] = max(m.step for m in history)
            if tags.get(NODES_TAG):
                self.nodes[trial_id] = set(tags[NODES_TAG].split(","))

    # Tune pickles its callbacks into the experiment state (for `--resume`); the client holds
    # locks and connections, so it is rebuilt from the URI instead.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "client"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.client = MlflowClient(tracking_uri=self.spec.tracking_uri)

    # ---- Tune callback hooks (driver process, called one at a time) -------------------------

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if trial.trial_id in self.children:  # a restarted or resumed trial keeps its run
            if trial.trial_id not in self.open:  # closed as KILLED by a Ctrl-C, now running again
                self.client.update_run(self.children[trial.trial_id], status="RUNNING")
                self.client.set_tag(self.children[trial.trial_id], STATUS_TAG, "running")
                self.open.add(trial.trial_id)
            return
        role = trial.config.get("role", "search")
        cfg = self.spec.config_for(overrides_of(trial.config))
        run = self.client.create_run(
            self.experiment_id,
            run_name=trial_label(trial),
            tags={
                PARENT_TAG: self.parent_id, ROLE_TAG: role, TRIAL_ID_TAG: trial.trial_id, STATUS_TAG: "running",
                TRIAL_TAG: trial_label(trial),
                OVERRIDES_TAG: json.dumps(overrides_of(trial.config)), SEED_TAG: str(cfg.optim.seed),
                **({REPLICATE_OF_TAG: trial.config[REPLICATE_KEY]} if REPLICATE_KEY in trial.config else {}),
            },  # fmt: skip
        )
        run_id = run.info.run_id
        self.children[trial.trial_id] = run_id
        self.open.add(trial.trial_id)
        self.planned[trial.trial_id] = cfg.optim.epochs
        device = "cuda" if self.spec.resources.gpus_per_worker > 0 else "cpu"
        self._log_params(run_id, {**cfg.flat(), "optim.precision": cfg.optim.precision_on(device)})  # as trained

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        run_id = self.children.get(trial.trial_id)
        if run_id is None:
            return
        step, now = int(result.get("epoch", result.get("training_iteration", 0))), int(time.time() * 1000)
        if step <= self.logged.get(trial.trial_id, 0):  # reported again after a resume: logged already
            return
        self.logged[trial.trial_id] = step
        metrics = [
            Metric(metric_key(key), rounded(key, float(value)), now, step)
            for key, value in result.items()
            if key not in _NOT_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)
        ]  # fmt: skip
        tags = []
        if result.get(TRAIN_NODES):
            nodes = self.nodes.setdefault(trial.trial_id, set())
            if not nodes.issuperset(result[TRAIN_NODES].split(",")):  # a restarted worker may move
                nodes.update(result[TRAIN_NODES].split(","))
                tags += [RunTag(NODES_TAG, ",".join(sorted(nodes))), RunTag(DRIVER_NODE_TAG, result[DRIVER_NODE])]
        if SCORE in result:
            best, _ = self.best.get(trial.trial_id, (None, None))
            if is_better(result[SCORE], best):  # the rule by which the trial keeps its checkpoints
                self.best[trial.trial_id] = (result[SCORE], result.get(CHECKPOINT_PATH_KEY))
                if result.get(CHECKPOINT_PATH_KEY):  # kept in MLflow too: a resumed sweep reads it back
                    tags.append(RunTag(BEST_CHECKPOINT_TAG, result[CHECKPOINT_PATH_KEY]))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run_id = self.children.get(trial.trial_id)
        if run_id is None or trial.trial_id not in self.open:
            return
        epochs = int((trial.last_result or {}).get("epoch", 0))
        status = end_status(self.spec, overrides_of(trial.config), epochs)
        tags = [RunTag(STATUS_TAG, status), RunTag("clipsweep.epochs_run", str(epochs))]
        if FINAL_STAGE_SCORE in (trial.last_result or {}):
            tags.append(RunTag("clipsweep.final_score", f"{trial.last_result[FINAL_STAGE_SCORE]:.6f}"))
        planned = self.planned[trial.trial_id]
        note = (f"completed: {epochs}/{planned} epochs" if status == "completed" else
                f"**stopped early** by the scheduler after epoch {epochs} of {planned}: its score is not "
                f"comparable with those of trials that trained all their epochs")  # fmt: skip
        _, best_path = self.best.get(trial.trial_id, (None, None))
        if best_path is not None:
            note += f"\n\n{reference_note(best_path)}"
            if self.spec.copy_checkpoints:
                self.copies.copy(best_path, self.client.get_run(run_id).info.artifact_uri, self.spec.tracking_uri)
        tags.append(RunTag(NOTE_TAG, note))
        if status == "stopped_early":  # the runs table shows no tag by default, but always the name
            tags.append(RunTag(RUN_NAME_TAG, f"{trial_label(trial)} (stopped {epochs}/{planned})"))
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, "FINISHED")
        self.open.discard(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run_id = self.children.get(trial.trial_id)
        if run_id is None or trial.trial_id not in self.open:
            return
        text = error_text(trial)
        reason = failure_reason(text)
        tags = [RunTag(STATUS_TAG, "failed"), RunTag(REASON_TAG, reason), RunTag(NOTE_TAG, f"**failed**: `{reason}` (error.txt)")]
        self.client.log_batch(run_id, tags=tags)
        self.client.log_text(run_id, text, "error.txt")
        self.client.set_terminated(run_id, "FAILED")
        self.open.discard(trial.trial_id)

    # ---- end of the sweep --------------------------------------------------------------------

    def finish(self, trials_table: list[dict[str, Any]], interrupted: bool) -> None:
        """Closes the parent (and any child still open: KILLED, as after Ctrl-C or a trial that
        a resumed sweep did not run again), once every checkpoint copy has ended."""
        self.copies.wait()
        self._kill_open()
        self.client.log_text(self.parent_id, json.dumps(trials_table, indent=1, default=str), "trials.json")
        self.client.set_tag(self.parent_id, STATUS_TAG, "killed" if interrupted else "completed")
        self.client.set_terminated(self.parent_id, "KILLED" if interrupted else "FINISHED")

    def _kill_open(self) -> None:
        for trial_id in sorted(self.open):
            run_id = self.children[trial_id]
            self.client.log_batch(run_id, tags=[RunTag(STATUS_TAG, "killed")])
            self.client.set_terminated(run_id, "KILLED")
        self.open.clear()

    def fail(self, error: BaseException) -> None:
        """Closes the sweep after an error of its own (not a trial's): open children KILLED, the
        parent FAILED with the reason, so that no run stays RUNNING. Best effort: the store may
        be what failed."""
        lines = [line for line in str(error).splitlines() if line.strip()]
        # Tune wraps a callback's error with its traceback: the last line is the error itself
        reason = (lines[-1] if len(lines) > 1 else f"{type(error).__name__}: {error}")[:500]
        try:
            self.copies.wait()
            self._kill_open()
            note = f"**the sweep failed**: `{reason}`; finished trials keep their runs; `clipsweep run --resume` continues it"
            tags = [RunTag(STATUS_TAG, "failed"), RunTag(REASON_TAG, reason), RunTag(NOTE_TAG, note)]
            self.client.log_batch(self.parent_id, tags=tags)
            self.client.set_terminated(self.parent_id, "FAILED")
        except Exception:  # noqa: BLE001 - the original error is the one to raise
            logger.exception("could not close the sweep's MLflow runs after: %s", reason)

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(k, json.dumps(v) if isinstance(v, (dict, list, tuple)) else str(v)) for k, v in params.items()]
        for start in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + _MAX_PARAMS_PER_BATCH])
