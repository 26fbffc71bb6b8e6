"""Reading a sweep back: `SweepResult` opens what a sweep left in MLflow and its storage, ranks it and publishes the leaderboard.

    >>> from clipsweep import SweepResult
    >>> result = SweepResult.load("clipsweep_results")                 # doctest: +SKIP
    >>> result.best_config().objective.logit_transform                 # doctest: +SKIP
    >>> result.leaderboard()[["variant", "aggregate", "mean_rank"]]    # doctest: +SKIP
    >>> result.plot_leaderboard("leaderboard.png")                     # doctest: +SKIP

Reading trials, the spec, the study and a stored leaderboard needs only the MLflow store. The
methods that may start Ray and evaluate the finalists say so: `build_leaderboard`, and
`ranked`, `leaderboard`, `plot_leaderboard` and `publish_leaderboard` when the sweep has no
leaderboard yet.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass

import optuna
import pandas as pd
import pyarrow.fs
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from rich.console import Console

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.suite import flatten

from .finalists import Selection, choose_finalists, evaluate_finalists, with_replicates
from .importance import param_importances, write_importance
from .keys import (
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
from .preflight import check_sweep, check_tracking
from .ray_start import start_ray
from .report import summary, write_reports
from .resources import plan_resources
from .search import load_study
from .spec import SweepSpec
from .stores import absolute_store, download
from .trial_data import TrialData, absolute_path

RECORD_FILE = "clipsweep_sweep.json"  # in the Tune experiment folder: how to find the sweep again


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
        and the last value of every `bench/...` and `data/...` (samples read and skipped) metric."""
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
                **{k: v for k, v in metrics.items() if k.startswith(("bench/", "data/"))},
            })  # fmt: skip
        frame = pd.DataFrame(rows)
        return frame.sort_values("name").reset_index(drop=True) if len(frame) else frame

    def spec(self) -> SweepSpec:
        """The sweep's spec, as logged on its parent run."""
        return SweepSpec.from_yaml(download(self._client(), self.mlflow_parent_run_id, "sweep.yaml"))

    def build_leaderboard(
        self, console: Console | None = None, data: TrialData | None = None, scores: Scores | None = None
    ) -> Leaderboard:
        """Starts or joins Ray and re-scores the finalists on the full tier (Ray tasks; runs
        already in `scores` are not evaluated again), ranks them, and publishes the tables and
        pictures (parent run artifacts `leaderboard/`, and `<path>/leaderboard/`)."""
        spec = self.spec()
        data = data or check_sweep(spec)
        trials = self.trials()
        selection = with_replicates(choose_finalists(trials, spec.leaderboard.finalists), trials, spec)
        plan = plan_resources(spec)
        start_ray(plan.ray_cpus, plan.ray_resources)
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
            say(f"re-scoring {plural(len(runs), 'run')} of {plural(len(selection.finalists), 'finalist')} on the "
                f"{spec.suite.name} full tier")  # fmt: skip
        done = lambda f, metrics: say(f"  {f.name}: full-tier mean primary {flatten(metrics)['bench/mean_primary']:.3f}")  # noqa: E731
        scores = {**scores, **evaluate_finalists(self._client(), spec, data, runs, done)}
        return rank_scores(selection, scores, spec.leaderboard), scores

    def leaderboard(self) -> pd.DataFrame:
        """One row per ranked variant (best first): each benchmark's metric with its interval,
        difference to the reference with its interval, Holm-corrected p-value and significance,
        the aggregate with its interval, and the mean rank. `.attrs["notes"]` says how to read it.

        Ranks the stored finalists' scores again (the same numbers as `leaderboard.csv`). If the
        sweep has no leaderboard yet, builds it first: that starts Ray and re-scores the
        finalists on the full tier (`build_leaderboard`).
        """
        return self.ranked().frame()

    def plot_leaderboard(self, path: str) -> str:
        """Writes the heatmap and the forest plot side by side to `path` (PNG); returns the path.
        Like `leaderboard`, may start Ray and re-score the finalists when none is stored."""
        board = self.ranked()
        s = board.settings
        save_plot(path, board.ranking, variant_labels(board.ranking, board.knobs()), s.alpha, s.level, s.margin_pts)
        return path

    def ranked(self) -> Leaderboard:
        """The leaderboard as an object (ranking, finalists, settings), from the stored scores.
        When the sweep has none, builds it first, which starts Ray and re-scores the finalists."""
        stored = self._rank_stored()
        return stored[0] if stored else self.build_leaderboard()

    def publish_leaderboard(self) -> Leaderboard:
        """Ranks the stored scores again and rewrites the tables, pictures and run metrics (with
        no stored scores, builds the leaderboard: Ray and full-tier re-scoring)."""
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


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def write_record(result: SweepResult) -> None:
    """Writes the record `SweepResult.load` finds the sweep by (into its experiment folder)."""
    fs, root = _filesystem(result.path)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{RECORD_FILE}") as f:
        f.write(json.dumps(dataclasses.asdict(result), indent=1).encode())
