"""Running a sweep: `Sweep` checks a spec, starts or joins Ray, runs the search and the seed replicates, and leaves a `SweepResult`.

    >>> from clipsweep import Sweep
    >>> result = Sweep.from_yaml("search_spaces/default.yaml").run()   # doctest: +SKIP
    >>> result.trials()[["name", "status", "score"]]                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import ray
from ray import tune
from rich.console import Console

from .finalists import choose_finalists, next_seeds, replicate_configs, with_replicates
from .footprint import sweep_footprint
from .keys import LEADERBOARD_TAG, PATH_TAG, SCORE
from .leaderboard import Scores
from .preflight import check_sweep, check_tracking, resource_warnings
from .ray_start import start_ray
from .resources import ResourcePlan, plan_resources
from .results import SweepResult, plural, write_record
from .spec import SweepSpec
from .stores import absolute_store
from .tracking import MlflowTracker
from .trial_data import TrialData, absolute_path
from .tune import build_replicate_tuner, build_tuner, experiment_name, experiment_path, restore_tuner

logger = logging.getLogger(__name__)


class Sweep:
    """A sweep of a spec: validated on construction, run with `.run()`.

    Example:
        >>> sweep = Sweep.from_yaml("search_spaces/default.yaml")   # doctest: +SKIP
        >>> result = sweep.run()                                    # doctest: +SKIP
    """

    def __init__(self, spec: SweepSpec, resuming: SweepResult | None = None) -> None:
        self.spec = spec
        self.resuming = resuming  # the interrupted sweep `.run()` continues, if any

    @classmethod
    def from_yaml(cls, path: str) -> Sweep:
        return cls(SweepSpec.from_yaml(path))

    @classmethod
    def restore(cls, path: str) -> Sweep:
        """An interrupted sweep (driver killed, Ctrl-C, SIGTERM), to continue with `.run()`:
        finished trials are kept, unfinished ones resume from their checkpoints, and the same
        MLflow parent run goes on.

        Args:
            path: the sweep's experiment folder, or its storage path (the newest sweep there).

        Raises:
            FileNotFoundError: no clipsweep sweep at `path`.
            SpecError: its MLflow store does not answer.
            ValueError: the sweep finished, or left no Tune state to resume.
        """
        record = SweepResult.load(path)
        check_tracking(record.tracking_uri)
        if record.status() == "completed":
            raise ValueError(f"--resume {path}: sweep {record.experiment} already completed; nothing to resume")
        if not tune.Tuner.can_restore(record.path):
            raise ValueError(f"--resume {path}: {record.path} holds no Tune experiment state to resume from")
        return cls(record.spec(), resuming=record)

    def plan(self) -> ResourcePlan:
        """The resource plan against the connected cluster, or for a local Ray on this machine."""
        cluster = ray.cluster_resources() if ray.is_initialized() else None
        return plan_resources(self.spec, cluster)

    def run(
        self, callbacks: list[tune.Callback] | None = None, quiet: bool = True, console: Console | None = None
    ) -> SweepResult:
        """Checks everything, starts or joins Ray, runs the trials, records them in MLflow, and
        builds the leaderboard (finalists re-scored on the full tier, ranked with intervals).

        Args:
            callbacks: extra Tune callbacks (the CLI's live table is one).
            quiet: keep Ray workers' logs off this console.
            console: where to print the resource plan and the finalists' progress (nowhere when None).

        Raises:
            SpecError, ValueError, DataFormatError: bad input, before Ray starts.
        """
        # Paths absolute, and the data checked, before Ray: from there on nothing may depend on
        # the working directory (see `steady_cwd`).
        spec = dataclasses.replace(
            self.spec, storage_path=absolute_path(self.spec.storage_path), tracking_uri=absolute_store(self.spec.tracking_uri)
        )
        data = check_sweep(spec)
        for warning in resource_warnings(spec):
            logger.warning(warning)
        # Tune's new console output prints its own experiment box and a TensorBoard hint even at
        # verbose=0; progress is the caller's (the CLI's live table). Ray reads this at `fit`.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        if quiet:
            for name in _SLOW_WARNERS:
                if not any(isinstance(f, _NoSlowWarnings) for f in logging.getLogger(name).filters):
                    logging.getLogger(name).addFilter(_NoSlowWarnings())
        with steady_cwd():
            return self._run_checked(spec, data, callbacks or [], quiet, console)

    def _run_checked(
        self, spec: SweepSpec, data: TrialData, callbacks: list[tune.Callback], quiet: bool, console: Console | None
    ) -> SweepResult:
        if os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
            start_ray(quiet=quiet)  # joins the cluster; the plan below reads its resources
        plan = self.plan()
        start_ray(plan.ray_cpus, plan.ray_resources, quiet)
        if console is not None:
            console.print(plan.describe(spec))
        data = data.with_decoded_training_set(spec.baseline)  # once for the sweep, not per trial
        if self.resuming is None:
            experiment = experiment_name(spec)
            tracker = MlflowTracker(spec, experiment, _plan_params(plan))
            result = SweepResult(spec.tracking_uri, tracker.parent_id, experiment, experiment_path(spec, experiment))
        else:
            result = self.resuming
            tracker = MlflowTracker(spec, result.experiment, parent_id=result.mlflow_parent_run_id)
        try:
            if self.resuming is None:
                write_record(result)  # from now on `--resume` finds the sweep
                tracker.client.set_tag(tracker.parent_id, PATH_TAG, result.path)
                tuner = build_tuner(spec, data, plan, experiment, [tracker, *callbacks])
            else:
                tuner = restore_tuner(spec, data, result.path, [tracker, *callbacks])
            with sigterm_as_sigint():
                grid = tuner.fit()
                summaries = [_summary(r) for r in grid]
                # Tune returns from fit() after Ctrl-C: trials still open, or not all run.
                interrupted = bool(tracker.open) or _unfinished(grid, spec.search.num_samples)
                scores: Scores = {}
                if not interrupted:  # the search ended: train the finalists' other seeds
                    replicates, interrupted, scores = _train_replicates(result, spec, data, plan, [tracker, *callbacks], console)
                    summaries += replicates
        except KeyboardInterrupt:  # a second Ctrl-C: the open runs become KILLED
            tracker.finish([], interrupted=True)
            raise
        except BaseException as e:  # Tune, storage or a callback failing: nothing stays RUNNING
            tracker.fail(e)
            raise
        tracker.finish(summaries, interrupted=interrupted or bool(tracker.open))
        if result.status() == "completed":  # after Ctrl-C: `clipsweep leaderboard` builds it later
            try:
                result.build_leaderboard(console, data, scores)
            except ValueError as e:  # nothing to rank (every trial failed): the trials stay recorded
                tracker.client.set_tag(tracker.parent_id, LEADERBOARD_TAG, f"not built: {e}"[:500])
        _report_footprint(tracker, result, console)
        return result


def _report_footprint(tracker: MlflowTracker, result: SweepResult, console: Console | None) -> None:
    """Logs (and prints) what the sweep keeps; a store that cannot be measured only warns."""
    try:
        footprint = sweep_footprint(tracker.client, result.path, tracker.parent_id)
        footprint.log(tracker.client, tracker.parent_id)
    except Exception as e:  # noqa: BLE001 - the sweep's records are complete without it
        logger.warning("could not measure the sweep's storage: %s", e)
        return
    if console is not None:
        console.print(footprint.describe(result.path), soft_wrap=True)


_SLOW_WARNERS = ("ray.tune.utils.util", "ray.tune.execution.tune_controller")


class _NoSlowWarnings(logging.Filter):
    """Drops Tune's "... took 0.6 s, which may be a performance bottleneck" warnings: they time
    this sweep's own callbacks (the MLflow writes of each epoch, once per epoch), not the trials."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "may be a performance bottleneck" not in record.getMessage()


@contextlib.contextmanager
def steady_cwd() -> Iterator[None]:
    """Runs the body from the temp folder, back to the working directory after if it still exists.

    A `ray job submit --working-dir` driver starts in Ray's copy of that folder, and Ray replaces
    the copy once the driver joins the cluster (measured here: `os.getcwd()` fails within
    seconds of `ray.init`); Tune's end of `fit` and MLflow's SQLite store call `os.getcwd()`.
    """
    try:
        before: str | None = os.getcwd()
    except FileNotFoundError:  # already replaced
        before = None
    os.chdir(tempfile.gettempdir())
    try:
        yield
    finally:
        with contextlib.suppress(OSError, TypeError):  # gone: stay where we are
            os.chdir(before)


@contextlib.contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM (`ray job stop`, a scheduler ending the job, `kill`) stops the sweep the way
    Ctrl-C does: Tune's SIGINT handler ends the trials and the open MLflow runs become KILLED.
    (Python's default for SIGTERM exits at once and would leave them RUNNING.)"""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train_replicates(
    result: SweepResult, spec: SweepSpec, data: TrialData, plan: ResourcePlan, callbacks: list[tune.Callback],
    console: Console | None,
) -> tuple[list[dict[str, Any]], bool, Scores]:
    """Trains the finalists' seed replicates as Tune trials on the same cluster (their own MLflow
    child runs, through the same tracker). Returns their summaries, whether Ctrl-C stopped them,
    and the full-tier scores an adaptive race already computed (nothing to evaluate again).

    Fixed seeds: one round to `leaderboard.seeds`. Adaptive (`{min, max}`): `min` seeds, then
    while a finalist's aggregate verdict is undecided and it has fewer than `max`, one more
    common seed for each such finalist (and the reference gets it too), a round at a time; a
    round that cannot run ends the race with the verdicts so far."""
    board = spec.leaderboard
    if board.max_seeds < 2:
        return [], False, {}
    trials = result.trials()
    try:
        selection = choose_finalists(trials, board.finalists)
    except ValueError:  # every trial failed: the leaderboard will say why
        return [], False, {}
    say = console.print if console is not None else (lambda *_: None)
    wanted = {f.name: board.first_seeds for f in selection.finalists}
    summaries: list[dict[str, Any]] = []
    scores: Scores = {}
    for look in itertools.count(1):
        configs = replicate_configs(selection, spec, trials, wanted)
        if configs:
            say(f"training {plural(len(configs), 'seed replicate')} of {plural(len(selection.finalists), 'finalist')} "
                f"(leaderboard.seeds={board.describe_seeds()}), {plan.max_concurrent} at a time")  # fmt: skip
            name = "replicates" if look == 1 else f"replicates-look{look}"
            try:
                grid = build_replicate_tuner(spec, data, plan, result.experiment, configs, callbacks, name).fit()
            except Exception as e:  # noqa: BLE001 - a later round failing keeps the verdicts so far
                if look == 1:
                    raise
                say(f"[yellow]race stopped: round {look} could not run ({type(e).__name__}: {e}); verdicts so far[/]")
                break
            summaries += [_summary(r) for r in grid]
            if _unfinished(grid, len(configs)):
                return summaries, True, scores
            trials = result.trials()
        if board.looks is None:
            break
        ranked, scores = result.rank_runs(with_replicates(selection, trials, spec), data, scores, console)
        racing, wanted = next_seeds(ranked.ranking, wanted, board.max_seeds)
        if not racing:
            break
        say(f"look {look}: undecided after their seeds: {', '.join(racing)}; one more seed each")
    return summaries, False, scores


def _unfinished(grid: tune.ResultGrid, expected: int) -> bool:
    """Whether Tune returned before every trial ran (Ctrl-C, SIGTERM): fewer than `expected`
    trials, or one that neither reported an epoch nor failed. (Tune marks a trial that Ctrl-C
    kept from starting TERMINATED, like a finished one, with only its `trial_id` as metrics; one
    stopped while running stays open in the tracker.)"""
    return len(grid) < expected or any(r.error is None and "epoch" not in (r.metrics or {}) for r in grid)


def _summary(result: Any) -> dict[str, Any]:
    metrics = result.metrics or {}
    return {"trial_id": metrics.get("trial_id"), "config": metrics.get("config"), SCORE: metrics.get(SCORE),
            "epoch": metrics.get("epoch"), "error": None if result.error is None else str(result.error)[:500]}  # fmt: skip


def _plan_params(plan: ResourcePlan) -> dict[str, Any]:
    return {"cpus_per_trial": plan.cpus_per_trial, "gpus_per_trial": plan.gpus_per_trial,
            "max_concurrent": plan.max_concurrent, "ray_cpus": plan.ray_cpus or "cluster"}  # fmt: skip
