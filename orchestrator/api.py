"""The typed Python API: `Sweep` runs a spec, `SweepResult` reads what it left in MLflow.

    >>> from clipsweep import Sweep
    >>> result = Sweep.from_yaml("search_spaces/default.yaml").run()   # doctest: +SKIP
    >>> result.trials()[["name", "status", "score"]]                   # doctest: +SKIP
    >>> result.best_config().objective.logit_transform                 # doctest: +SKIP
    >>> result.leaderboard()[["variant", "aggregate", "mean_rank"]]      # doctest: +SKIP
    >>> result.plot_leaderboard("leaderboard.png")                     # doctest: +SKIP
    >>> SweepResult.load("clipsweep_results")                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
import pyarrow.fs
import ray
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray import tune
from rich.console import Console

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.suite import flatten

from .finalists import Selection, choose_finalists, evaluate_finalists, next_seeds, replicate_configs, with_replicates
from .importance import param_importances, write_importance
from .keys import (
    LEADERBOARD_TAG,
    NOTE_TAG,
    OVERRIDES_TAG,
    PARENT_TAG,
    PATH_TAG,
    REASON_TAG,
    REPLICATE_KEY,
    REPLICATE_OF_TAG,
    ROLE_TAG,
    SCORE,
    SEED_TAG,
    STATUS_TAG,
    TRIAL_ID_TAG,
    TRIAL_TAG,
)
from .leaderboard import ARTIFACT_DIR, Leaderboard, Scores, load_scores, log_to_runs, rank_scores, save_scores
from .plots import save_plot, variant_labels
from .preflight import check_sweep, check_tracking, resource_warnings
from .report import summary, write_reports
from .search import load_study
from .spec import SweepSpec
from .stores import absolute_store
from .tracking import MlflowTracker  # fmt: skip
from .trial import TrialData, absolute_path
from .tune import (  # fmt: skip
    ResourcePlan,
    build_replicate_tuner,
    build_tuner,
    experiment_name,
    experiment_path,
    plan_resources,
    restore_tuner,
    start_ray,
)

logger = logging.getLogger(__name__)

RECORD_FILE = "clipsweep_sweep.json"  # in the Tune experiment folder: how to find the sweep again


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
            start_ray(self.plan(), quiet)  # joins the cluster; the plan below reads its resources
        plan = self.plan()
        start_ray(plan, quiet)
        if console is not None:
            console.print(plan.describe(spec))
        if quiet:
            logging.getLogger("ray.data").setLevel(logging.ERROR)  # the driver's dataset plans and tips
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
                _write_record(result)  # from now on `--resume` finds the sweep
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
        return result


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
            say(f"training {_count(len(configs), 'seed replicate')} of {_count(len(selection.finalists), 'finalist')} "
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


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


@dataclass(frozen=True)
class SweepResult:
    """A finished (or interrupted) sweep, read back from its MLflow parent and child runs.

    Attributes:
        tracking_uri: the MLflow store.
        mlflow_parent_run_id: the sweep's parent run.
        experiment: this launch's name (the parent run's name and the Tune experiment folder).
        path: the Tune experiment folder (checkpoints, Tune state, the record file).
    """

    tracking_uri: str
    mlflow_parent_run_id: str
    experiment: str
    path: str

    @classmethod
    def load(cls, storage_path: str) -> SweepResult:
        """Reopens a sweep from its experiment folder, or the newest sweep under a storage path."""
        fs, root = _filesystem(storage_path)
        records = [f"{root}/{RECORD_FILE}"] + sorted(
            (f"{info.path}/{RECORD_FILE}" for info in fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
             if info.type == pyarrow.fs.FileType.Directory),
            reverse=True,  # newest first: experiment names end in a timestamp
        )  # fmt: skip
        found = [r for r in records if fs.get_file_info(r).type == pyarrow.fs.FileType.File]
        if not found:
            raise FileNotFoundError(f"{storage_path}: no {RECORD_FILE} here or one folder down (not a clipsweep sweep)")
        with fs.open_input_stream(found[0]) as f:
            text = f.readall()
        try:
            doc = json.loads(text)
            return cls(doc["tracking_uri"], doc["mlflow_parent_run_id"], doc["experiment"], doc["path"])
        except (ValueError, KeyError, TypeError) as e:  # cut short by a full disk, or edited by hand
            raise ValueError(
                f"{found[0]}: not valid JSON of a sweep record ({type(e).__name__}: {e}); expected the keys "
                "tracking_uri, mlflow_parent_run_id, experiment, path"
            ) from None

    @classmethod
    def from_run(cls, tracking_uri: str, parent_run_id: str, uri_name: str = "tracking_uri") -> SweepResult:
        """Reopens a sweep from its MLflow parent run (`uri_name`: what errors call the URI).

        Raises:
            ValueError: no such run in that store, or a run that is not a sweep's parent.
        """
        uri = absolute_store(tracking_uri)
        check_tracking(uri, field=uri_name)  # a server that does not answer fails here, not after MLflow's retries
        if uri.startswith("sqlite:///") and not os.path.isfile(uri.removeprefix("sqlite:///")):
            # MLflow would create an empty store there
            raise ValueError(f"{parent_run_id!r}: no such folder, and no MLflow store at {uri} (the file does not exist)")
        try:
            run = MlflowClient(tracking_uri=uri).get_run(parent_run_id)
        except MlflowException:
            raise ValueError(f"{parent_run_id!r}: neither a path nor an MLflow run in {uri} (no such run)") from None
        if run.data.tags.get(ROLE_TAG) != "sweep":
            raise ValueError(f"MLflow run {parent_run_id} is not a clipsweep sweep's parent run")
        return cls(uri, parent_run_id, run.info.run_name, run.data.tags.get(PATH_TAG, ""))

    def _client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)

    def experiment_id(self) -> str:
        """The id of the sweep's MLflow experiment (the runs table of its parent and children)."""
        return self._client().get_run(self.mlflow_parent_run_id).info.experiment_id

    def status(self) -> str:
        """How the sweep ended: `completed`, or `killed` (Ctrl-C, SIGTERM, a crash of Tune)."""
        return self._client().get_run(self.mlflow_parent_run_id).data.tags.get(STATUS_TAG, "unknown")

    def trials(self) -> pd.DataFrame:
        """One row per trial (MLflow child run): name, role, status, score, epochs, searched fields,
        and the last value of every `bench/...` metric."""
        client = self._client()
        parent = client.get_run(self.mlflow_parent_run_id)
        runs = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.{PARENT_TAG} = '{self.mlflow_parent_run_id}'", max_results=10_000
        )
        rows = []
        for run in runs:
            tags, metrics = run.data.tags, run.data.metrics
            overrides = json.loads(tags.get(OVERRIDES_TAG, "{}"))
            rows.append({
                "run_id": run.info.run_id, "name": tags.get(TRIAL_TAG, run.info.run_name), "trial_id": tags.get(TRIAL_ID_TAG),
                "role": tags.get(ROLE_TAG), "status": tags.get(STATUS_TAG), "mlflow_status": run.info.status,
                "score": metrics.get(SCORE), "epochs": int(tags.get("clipsweep.epochs_run", 0)),
                "seed": int(tags[SEED_TAG]) if SEED_TAG in tags else None, REPLICATE_KEY: tags.get(REPLICATE_OF_TAG),
                "failure_reason": tags.get(REASON_TAG), "overrides": overrides,
                "seconds": (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
                **{k: v for k, v in metrics.items() if k.startswith("bench/")},
            })  # fmt: skip
        frame = pd.DataFrame(rows)
        return frame.sort_values("name").reset_index(drop=True) if len(frame) else frame

    def spec(self) -> SweepSpec:
        """The sweep's spec, as logged on its parent run."""
        return SweepSpec.from_yaml(self._client().download_artifacts(self.mlflow_parent_run_id, "sweep.yaml"))

    def build_leaderboard(
        self, console: Console | None = None, data: TrialData | None = None, scores: Scores | None = None
    ) -> Leaderboard:
        """Re-scores the finalists on the full tier (Ray tasks; runs already in `scores` are not
        evaluated again), ranks them, and publishes the tables and pictures (parent run
        artifacts `leaderboard/`, and `<path>/leaderboard/`)."""
        spec = self.spec()
        data = data or check_sweep(spec)
        trials = self.trials()
        selection = with_replicates(choose_finalists(trials, spec.leaderboard.finalists), trials, spec)
        if not ray.is_initialized():
            start_ray(plan_resources(spec))
        board, scores = self.rank_runs(selection, data, scores or {}, console)
        save_scores(self._client(), self.mlflow_parent_run_id, selection, scores)
        return self._publish(board, scores)

    def rank_runs(
        self, selection: Selection, data: TrialData, scores: Scores, console: Console | None = None
    ) -> tuple[Leaderboard, Scores]:
        """The selection ranked on the full tier: its runs not in `scores` evaluated (Ray tasks),
        then all of them ranked. Returns the leaderboard and every score so far."""
        spec = self.spec()
        say = console.print if console is not None else (lambda *_: None)
        runs = [r for r in selection.runs() if r.name not in scores]
        if runs:
            say(f"re-scoring {_count(len(runs), 'run')} of {_count(len(selection.finalists), 'finalist')} on the "
                f"{spec.suite.name} full tier")  # fmt: skip
        done = lambda f, metrics: say(f"  {f.name}: full-tier mean primary {flatten(metrics)['bench/mean_primary']:.3f}")  # noqa: E731
        scores = {**scores, **evaluate_finalists(self._client(), spec, data, runs, done)}
        return rank_scores(selection, scores, spec.leaderboard), scores

    def leaderboard(self) -> pd.DataFrame:
        """One row per ranked variant (best first): each benchmark's metric with its interval,
        difference to the reference with its interval, Holm-corrected p-value and significance,
        the aggregate with its interval, and the mean rank. `.attrs["notes"]` says how to read it.

        Ranks the stored finalists' scores again (the same numbers as `leaderboard.csv`); builds
        the leaderboard first if the sweep has none.
        """
        return self.ranked().frame()

    def plot_leaderboard(self, path: str) -> str:
        """Writes the heatmap and the forest plot side by side to `path` (PNG); returns the path."""
        board = self.ranked()
        s = board.settings
        save_plot(path, board.ranking, variant_labels(board.ranking, board.knobs()), s.alpha, s.level, s.margin_pts)
        return path

    def ranked(self) -> Leaderboard:
        """The leaderboard as an object (ranking, finalists, settings), from the stored scores;
        built first if the sweep has none."""
        stored = self._rank_stored()
        return stored[0] if stored else self.build_leaderboard()

    def publish_leaderboard(self) -> Leaderboard:
        """Ranks the stored scores again and rewrites the tables, pictures and run metrics."""
        stored = self._rank_stored()
        return self._publish(*stored) if stored else self.build_leaderboard()

    def _rank_stored(self) -> tuple[Leaderboard, Scores] | None:
        stored = load_scores(self._client(), self.mlflow_parent_run_id)
        if stored is None:
            return None
        selection, scores = stored
        return self._with_compute(rank_scores(selection, scores, self.spec().leaderboard)), scores

    def _with_compute(self, board: Leaderboard) -> Leaderboard:
        """The board with the note of the compute its runs took (search vs replicates)."""
        return dataclasses.replace(board, extra_notes=(compute_note(self.trials()),))

    def _publish(self, board: Leaderboard, scores: Scores) -> Leaderboard:
        client = self._client()
        board = self._with_compute(board)
        with tempfile.TemporaryDirectory() as directory:
            write_reports(board, directory, write_importance(self.study(), directory))
            client.log_artifacts(self.mlflow_parent_run_id, directory, ARTIFACT_DIR)
            if self.path:  # a sweep reopened from its MLflow run alone may not know its folder
                fs, root = _filesystem(self.path)
                fs.create_dir(f"{root}/{ARTIFACT_DIR}", recursive=True)
                pyarrow.fs.copy_files(directory, f"{root}/{ARTIFACT_DIR}", destination_filesystem=fs)
        log_to_runs(client, board, scores)
        best = _best_trial(self.trials())
        page = f"{self.path}/{ARTIFACT_DIR}/leaderboard.html" if self.path else f"parent run artifacts {ARTIFACT_DIR}/leaderboard.html"
        said = summary(board, *((best["name"], best["score"]) if best is not None else (None, None)), page)
        # Short keys: MLflow's run page cuts a tag key after ~12 characters ("clipsweep.wi…").
        tags = {key: said[key] for key in ("winner", "winner_aggregate", "verdicts", "best_trial", "leaderboard")}
        client.log_batch(self.mlflow_parent_run_id, tags=[RunTag(k, v) for k, v in {**tags, NOTE_TAG: said["text"]}.items()])
        return board

    def study(self) -> optuna.Study | None:
        """The search's Optuna study (trials inside the space, as COMPLETE, PRUNED or FAIL)."""
        return load_study(self.path) if self.path else None

    def param_importances(self) -> pd.Series:
        """fANOVA importance of each knob over the completed search trials, largest first
        (empty, with the reason in `.attrs["note"]`, below 8 completed trials)."""
        return param_importances(self.study())

    def best_config(self) -> TrialConfig:
        """The config of the best-scoring search trial that trained all its epochs (else of any)."""
        best = _best_trial(self.trials())
        if best is None:
            raise ValueError(f"sweep {self.experiment}: no trial reported a score")
        return self.spec().config_for(best["overrides"])


def compute_note(trials: pd.DataFrame) -> str:
    """'Compute: search 8 runs, 152 trial-s; seed replicates 9 runs, 171 trial-s (53% of all)',
    from each child run's own start and end."""
    if trials.empty:
        return "Compute: no runs."
    seconds = trials["seconds"].fillna(0.0)
    replicate = trials["role"] == "replicate"
    spent = {"search": seconds[~replicate].sum(), "replicates": seconds[replicate].sum()}
    share = spent["replicates"] / max(sum(spent.values()), 1e-9)
    return (f"Compute: search {int((~replicate).sum())} runs, {spent['search']:.0f} trial-s; seed replicates "
            f"{int(replicate.sum())} runs, {spent['replicates']:.0f} trial-s ({share:.0%} of all).")  # fmt: skip


def _best_trial(frame: pd.DataFrame) -> pd.Series | None:
    """The row of the best-scoring trial (not a replicate) that trained all its epochs, else of
    any that scored; None when none did."""
    scored = frame[frame["score"].notna() & (frame["role"] != "replicate")] if len(frame) else frame
    if scored.empty:
        return None
    finished = scored[scored["status"] == "completed"]
    return (finished if len(finished) else scored).sort_values("score", ascending=False).iloc[0]


def _filesystem(path: str) -> tuple[pyarrow.fs.FileSystem, str]:
    return pyarrow.fs.FileSystem.from_uri(absolute_path(path))



def _write_record(result: SweepResult) -> None:
    fs, root = _filesystem(result.path)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{RECORD_FILE}") as f:
        f.write(json.dumps(dataclasses.asdict(result), indent=1).encode())
