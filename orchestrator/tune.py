"""Ray Tune over Ray Train trials: the trainable, the replicates' searcher, and the Tuners of a sweep.

The Ray Train V2 pattern: each Tune trial is a function trainable that builds and fits the
trial's TorchTrainer (through `run_trial`, as `clipsweep train` does); a callback in the Train
controller forwards every epoch report to Tune. The trial's Tune actor reserves only its driver;
its Train workers reserve their own CPUs/GPUs, so `max_concurrent_trials` is what keeps the sum
inside the cluster (`plan_resources`). A one-worker trial (`resources.in_trial_actor`) instead
runs the same loop in its Tune actor (`run_trial_in_actor`), which then reserves the worker's
share too and reports to Tune itself.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.search import Searcher

from clipsweep.trainers import startup
from clipsweep.trainers.schedules import stage_plan

from .keys import (
    DRIVER_NODE,
    FINAL_STAGE_EPOCH,
    FINAL_STAGE_SCORE,
    NODE_KEY,
    REPLICATE_KEY,
    SCORE,
    SEED_FIELD,
    TRAIN_NODES,
)
from .resources import ResourcePlan, trial_resources
from .search import StudySearcher, overrides_of
from .spec import SweepSpec
from .trial import run_trial, run_trial_in_actor
from .trial_data import TrialData, absolute_path

STATE_SNAPSHOT_S = 1  # the most seconds of Tune's bookkeeping a lost head can lose


class Replicates(Searcher):
    """Hands out the leaderboard's seed replicates (whole overrides, one per trial), then ends."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__(metric=SCORE, mode="max")
        self.configs = list(configs)
        self.handed = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.handed >= len(self.configs):
            return Searcher.FINISHED
        self.handed += 1
        return dict(self.configs[self.handed - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: every replicate is fixed in advance."""

    def get_state(self) -> dict[str, Any]:
        return {"handed": self.handed}

    def set_state(self, state: dict[str, Any]) -> None:
        self.handed = state["handed"]

    # Tune saves a searcher into the experiment folder with these (a resumed sweep plans the
    # replicates still missing again, so this is Tune's bookkeeping, not clipsweep's).
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def trial_label(trial: Any) -> str:
    """`trial-00-baseline`, `trial-03-point`, ...: numbered in the order the searcher handed
    them out (Tune's experiment tag starts with that 1-based counter), not the order they start.
    A seed replicate is named after its finalist: `trial-03-point-seed2`."""
    if REPLICATE_KEY in trial.config:
        return f"{trial.config[REPLICATE_KEY]}-seed{trial.config[SEED_FIELD]}"
    number = int(trial.experiment_tag.split("_", 1)[0]) - 1
    return f"trial-{number:02d}-{trial.config.get('role', 'search')}"


def end_status(spec: SweepSpec, overrides: dict[str, Any], epochs_run: int) -> str:
    """How a trial that ended without error ended: completed (`SweepSpec.full_fidelity`), or
    stopped early by the scheduler."""
    return "completed" if epochs_run >= spec.full_fidelity(spec.config_for(overrides)) else "stopped_early"


def tune_result(ranks: list[dict[str, Any]], final_stage_start: int, driver_node: str) -> dict[str, Any]:
    """An epoch's report as Tune gets it: rank 0's metrics plus the keys Optuna and ASHA read.

    ASHA must compare trials only on their final stage (a two-stage trial's stage 1 scores an
    image tower against a frozen text tower). Its clock, `final_stage_epoch`, is absent from
    earlier epochs, and ASHA skips results without its clock; `final_stage_score` is there as
    NaN because Tune insists every result carries the scheduler's metric.

    It also says where the trial ran: the driver's node and every rank's node (Tune would
    otherwise see only rank 0's report).
    """
    first = dict(ranks[0])
    first[TRAIN_NODES] = ",".join(sorted({m[NODE_KEY] for m in ranks if NODE_KEY in m}))
    first[DRIVER_NODE] = driver_node
    if "bench/mean_primary" in first:
        first[SCORE] = first["bench/mean_primary"]
        first[FINAL_STAGE_SCORE] = math.nan
        if first["epoch"] > final_stage_start:
            first[FINAL_STAGE_SCORE] = first[SCORE]
            first[FINAL_STAGE_EPOCH] = first["epoch"] - final_stage_start
    return first


class ScoreReport(TuneReportCallback):
    """Forwards each Train report to Tune as `tune_result` (built in the trainable, so that
    its node is the driver's)."""

    def __init__(self, final_stage_start: int) -> None:
        super().__init__()
        self.final_stage_start = final_stage_start  # epochs before the final stage
        self.driver_node = ray.get_runtime_context().get_node_id()

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        first = tune_result(metrics, self.final_stage_start, self.driver_node)
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)


def train_trial(config: dict[str, Any], spec: SweepSpec, data: TrialData, train_storage: str) -> None:
    """The Tune function trainable: the trial's config trained in this actor (one worker,
    `resources.in_trial_actor`) or by a TorchTrainer; either way its checkpoints go to
    `<train_storage>/<trial name>`."""
    startup.mark("trainable_start", begins=True)
    cfg = spec.config_for(overrides_of(config))
    r = spec.resources
    name = tune.get_context().get_trial_name()
    final_stage_start = cfg.optim.epochs - stage_plan(cfg)[-1].epochs
    if r.in_trial_actor:
        node = ray.get_runtime_context().get_node_id()
        run_trial_in_actor(
            cfg,
            data,
            run_dir=f"{train_storage}/{name}",
            forward=lambda metrics: tune.report(tune_result([metrics], final_stage_start, node)),
            cpus=r.cpus_per_worker,
            eval_tier=spec.suite.tier,
            suite=spec.suite.with_heldout(data.heldout),
            keep=spec.checkpoints.keep,
        )
        return
    run_trial(
        cfg,
        data,
        workers=r.workers_per_trial,
        storage_path=train_storage,
        name=name,
        cpus_per_worker=r.cpus_per_worker,
        gpus_per_worker=r.gpus_per_worker,
        eval_tier=spec.suite.tier,
        callbacks=[ScoreReport(final_stage_start)],
        suite=spec.suite.with_heldout(data.heldout),
        max_failures=spec.failure_config.max_failures,
        keep=spec.checkpoints.keep,
    )


def build_tuner(
    spec: SweepSpec, data: TrialData, plan: ResourcePlan, experiment: str, callbacks: list[tune.Callback]
) -> tune.Tuner:
    """The Tuner of a sweep: the study searcher + the scheduler, `plan.max_concurrent` at a time."""
    trainable = _trainable(spec, data, experiment)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=StudySearcher(spec),
            scheduler=spec.scheduler.build(spec.baseline.optim.epochs),
            num_samples=spec.search.num_samples,
            max_concurrent_trials=plan.max_concurrent,
            reuse_actors=spec.resources.in_trial_actor,  # torch stays imported for the next trial
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=absolute_path(spec.storage_path),
            callbacks=callbacks,
            verbose=0,  # the CLI's live table is the progress
            failure_config=trial_failures(spec),
        ),
    )


def build_replicate_tuner(
    spec: SweepSpec, data: TrialData, plan: ResourcePlan, experiment: str, configs: list[dict[str, Any]],
    callbacks: list[tune.Callback], name: str = "replicates",
) -> tune.Tuner:
    """The Tuner of the seed replicates: every config trained all its epochs (no scheduler), as
    many at once as the plan allows, on the same trainable and Train storage as the search.
    `name`: its Tune experiment folder inside the sweep's (one per round of an adaptive race)."""
    return tune.Tuner(
        _trainable(spec, data, experiment),
        tune_config=tune.TuneConfig(
            search_alg=Replicates(configs), num_samples=len(configs), max_concurrent_trials=plan.max_concurrent,
            reuse_actors=spec.resources.in_trial_actor,
        ),
        run_config=tune.RunConfig(
            name=name,  # a Tune experiment of its own, inside the sweep's folder
            storage_path=experiment_path(spec, experiment),
            callbacks=callbacks,
            verbose=0,
            failure_config=trial_failures(spec),
        ),
    )


def restore_tuner(spec: SweepSpec, data: TrialData, path: str, callbacks: list[tune.Callback]) -> tune.Tuner:
    """The Tuner of an interrupted sweep (`clipsweep run --resume`), continuing where it stopped.

    Finished and failed trials stay as they were (their records are final); unfinished ones run
    again under their old trial ids, and each one's Train run restores from its last checkpoint
    in storage (Ray Train V2 resumes a run whose name exists there), so no epoch is redone.
    """
    experiment = path.rstrip("/").rsplit("/", 1)[-1]
    tuner = tune.Tuner.restore(
        path, trainable=_trainable(spec, data, experiment), resume_unfinished=True, resume_errored=False
    )
    # Tune restores the callbacks pickled at launch; this process's own replace them (the
    # tracker reattached to the parent run, the progress table on this console).
    tuner._local_tuner.get_run_config().callbacks = callbacks
    return tuner


def trial_failures(spec: SweepSpec) -> tune.FailureConfig:
    """Tune's retries of a failed trial: `failure_config.max_failures` when the trial trains in
    its actor (a retry continues from the trial's last checkpoint); otherwise none, because
    the TorchTrainer restarts its own workers and a trial that still fails is recorded."""
    return tune.FailureConfig(max_failures=spec.failure_config.max_failures if spec.resources.in_trial_actor else 0)


def _trainable(spec: SweepSpec, data: TrialData, experiment: str) -> Any:
    # Tune snapshots its experiment state (which trials exist, which ended) at most every 10 s
    # by default; a head lost in between loses that much bookkeeping, and `--resume` then
    # starts a trial it does not know of again, as a new trial with a new MLflow run. Trials
    # start and end seconds apart, so snapshot every second (a local JSON + the searcher's
    # pickle; uploads to remote storage keep Tune's own period). Read when the Tuner fits.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_SNAPSHOT_S))
    train_storage = f"{experiment_path(spec, experiment)}/train"
    trainable = tune.with_parameters(train_trial, spec=spec, data=data, train_storage=train_storage)
    return tune.with_resources(trainable, trial_resources(spec))


def experiment_path(spec: SweepSpec, experiment: str) -> str:
    """The Tune experiment folder of a launch: `<storage_path>/<experiment>` (absolute or a URI)."""
    return f"{absolute_path(spec.storage_path).rstrip('/')}/{experiment}"


def experiment_name(spec: SweepSpec) -> str:
    """A fresh name per launch: Ray restores runs whose name exists, and a new sweep must not."""
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
