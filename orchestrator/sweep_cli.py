"""`clipsweep run [SPACE.yaml]`, `clipsweep validate SPACE.yaml`, `clipsweep leaderboard SWEEP`.

`run` prints the plan, shows a live table of trials while Tune works, and ends with the trials
ranked by cheap-tier score, the leaderboard (finalists on the full tier, with intervals) and the
`mlflow ui` command that opens the records. `validate` does every check `run` does before Ray
starts, and nothing else. `leaderboard` rebuilds a finished sweep's leaderboard without training.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from .leaderboard import ARTIFACT_DIR
from .preflight import check_sweep, resource_warnings
from .progress import SweepProgress, describe_overrides
from .report import console_table
from .results import SweepResult
from .spec import SweepSpec
from .sweep import Sweep

# The demo space lives in the repository (next to `orchestrator/`); from another working
# directory an editable install still finds it there.
DEFAULT_SPACE = "search_spaces/default.yaml"


def add_sweep_commands(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run a sweep: Ray Tune (Optuna, and ASHA unless scheduler.name is none) over Ray Train trials, tracked in MLflow")
    run.add_argument("space", nargs="?", help=f"sweep spec YAML (default {DEFAULT_SPACE})")
    run.add_argument("--storage", help="override storage_path (a local folder or any fsspec URI)")
    run.add_argument("--tracking-uri", help="override mlflow.tracking_uri (sqlite:///FILE or http://SERVER)")
    run.add_argument("--num-samples", type=int, help="override search.num_samples")
    run.add_argument(
        "--resume", metavar="PATH",
        help="continue an interrupted sweep: its experiment folder, or its storage path (the newest sweep there)",
    )  # fmt: skip
    run.set_defaults(func=run_command)
    validate = subparsers.add_parser("validate", help="check a sweep spec (and its data, storage, MLflow) without running it")
    validate.add_argument("space", help="sweep spec YAML")
    validate.set_defaults(func=validate_command)
    board = subparsers.add_parser(
        "leaderboard", help="rank a finished sweep's variants again (tables, pictures, MLflow) without retraining"
    )
    board.add_argument("sweep", help="the sweep's storage path or experiment folder, or its MLflow parent run id")
    board.add_argument("--tracking-uri", default="sqlite:///mlruns.db", help="MLflow store of a parent run id (default sqlite:///mlruns.db)")
    board.add_argument("--rescore", action="store_true", help="evaluate the finalists again instead of ranking the stored scores")
    board.set_defaults(func=leaderboard_command)


def default_space() -> str:
    """`search_spaces/default.yaml` of the working directory, else of the repository."""
    if os.path.exists(DEFAULT_SPACE):
        return DEFAULT_SPACE
    return str(Path(__file__).resolve().parent.parent / DEFAULT_SPACE)


def load_spec(args: argparse.Namespace) -> SweepSpec:
    """The spec of `args.space` with the command line's overrides applied (and re-validated)."""
    spec = SweepSpec.from_yaml(args.space or default_space())
    overrides = {
        "storage_path": getattr(args, "storage", None),
        "tracking_uri": getattr(args, "tracking_uri", None),
    }
    spec = dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v is not None})
    if getattr(args, "num_samples", None) is not None:
        spec = dataclasses.replace(spec, search=dataclasses.replace(spec.search, num_samples=args.num_samples))
    return spec


def validate_command(args: argparse.Namespace, console: Console) -> None:
    spec = load_spec(args)
    data = check_sweep(spec)
    for warning in resource_warnings(spec):
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
    console.print(
        f"[green]ok[/green] {spec.source}: sweep {spec.name!r}, {len(spec.params)} searched fields, "
        f"{spec.search.num_samples} trials, {data.n_train} training items"
    )
    console.print(Sweep(spec).plan().describe(spec))
    if note := spec.suite.skipped_note():
        console.print(note)


def run_command(args: argparse.Namespace, console: Console) -> None:
    if args.resume:
        given = [_FLAGS[name] for name in _FLAGS if getattr(args, name)]
        if given:
            raise ValueError(f"--resume {args.resume} continues the sweep as it was launched; drop {', '.join(given)}")
        sweep = Sweep.restore(args.resume)
        spec = sweep.spec
        console.print(f"resuming {sweep.resuming.experiment} (MLflow parent run {sweep.resuming.mlflow_parent_run_id})")
    else:
        spec = load_spec(args)
        sweep = Sweep(spec)
    console.print(f"[bold]{spec.name}[/bold] ({spec.source})")  # the plan follows once Ray is up
    console.print(
        f"searching {', '.join(p.field for p in spec.params)} with {spec.search.algorithm}; "
        f"{spec.scheduler.describe(spec.baseline.optim.epochs)}; scored on {spec.suite.name}/{spec.suite.tier}"
    )
    if note := spec.suite.skipped_note():
        console.print(note)
    progress = SweepProgress(spec, console)
    try:
        result = sweep.run(callbacks=[progress], console=console)
    finally:
        progress.stop()
    console.print(ranked_table(result))
    skipped = skipped_samples_note(result.trials())
    if skipped:
        console.print(skipped, soft_wrap=True)
    if result.status() == "completed":
        try:
            print_leaderboard(result, console)
        except ValueError as e:  # every trial failed: the table above says why
            console.print(f"[bold red]no leaderboard:[/bold red] {e}")
    console.print(f"MLflow parent run {result.mlflow_parent_run_id}; open the records with:")
    if result.tracking_uri.startswith(("http://", "https://")):
        console.print(f"  {runs_view(result.tracking_uri, result.experiment_id())}", soft_wrap=True)
    else:
        console.print(f"  mlflow ui --backend-store-uri {result.tracking_uri}", soft_wrap=True)
        console.print(f"  then {runs_view('http://127.0.0.1:5000', result.experiment_id())}", soft_wrap=True)
    console.print(f"reopen in Python: SweepResult.load({result.path!r})", soft_wrap=True)
    if result.status() == "killed":
        console.print(f"continue it with: clipsweep run --resume {result.path}", soft_wrap=True)
        raise KeyboardInterrupt  # the CLI's exit status says the sweep did not finish


_FLAGS = {"space": "the spec argument", "storage": "--storage", "tracking_uri": "--tracking-uri", "num_samples": "--num-samples"}


def runs_view(server: str, experiment_id: str) -> str:
    """The URL of an experiment's runs table: MLflow 3's UI opens in its GenAI mode (traces)
    unless the URL asks for the "Model training" view."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def leaderboard_command(args: argparse.Namespace, console: Console) -> None:
    if os.path.isfile(args.sweep):
        raise ValueError(
            f"{args.sweep} is a file; allowed: a sweep's storage path or experiment folder, or its MLflow parent run id"
        )
    if os.path.exists(args.sweep) or "://" in args.sweep:
        result = SweepResult.load(args.sweep)
    else:
        result = SweepResult.from_run(args.tracking_uri, args.sweep, uri_name="--tracking-uri")
    if args.rescore:
        result.build_leaderboard(console)
    else:
        result.publish_leaderboard()
    print_leaderboard(result, console)


def print_leaderboard(result: SweepResult, console: Console) -> None:
    """The console leaderboard and where its files are."""
    console.print(console_table(result.ranked()))
    where = f"{result.path}/{ARTIFACT_DIR}" if result.path else "(no local copy)"
    console.print(f"leaderboard files: {where} (CSV, Markdown, HTML, 2 PNGs), also on MLflow run {result.mlflow_parent_run_id}", soft_wrap=True)


def skipped_samples_note(trials: pd.DataFrame) -> str | None:
    """One line on the samples the trials skipped in their last epoch, when any did."""
    if "data/skipped" not in trials or not (trials["data/skipped"].fillna(0) > 0).any():
        return None
    worst = trials.loc[trials["data/skipped"].fillna(0).idxmax()]
    reasons = [
        f"{column.removeprefix('data/skipped/').replace('_', ' ')} {worst[column]:.0f}"
        for column in sorted(c for c in trials if c.startswith("data/skipped/"))
        if worst[column] > 0
    ]
    return (
        f"skipped samples: up to {worst['data/skipped']:.0f} of {worst['data/read']:.0f} an epoch ({worst['name']}: "
        f"{', '.join(reasons)}); each trial's counts are its data/skipped/... metrics"
    )


def ranked_table(result: SweepResult) -> Table:
    """Trials by final cheap-tier score, best first (unscored ones last)."""
    frame = result.trials()
    table = Table(title=f"{result.experiment}: trials by score (mean primary metric of the suite's per-epoch tier)")
    for column in ("rank", "trial", "config", "status", "epochs", "score"):
        table.add_column(column, justify="right" if column in ("rank", "epochs", "score") else "left")
    if frame.empty:
        return table
    frame = frame.assign(_key=frame["score"].fillna(-math.inf)).sort_values("_key", ascending=False)
    for rank, row in enumerate(frame.itertuples(), start=1):
        score = "" if row.score is None or math.isnan(row.score) else f"{row.score:.3f}"
        status = row.status if row.status != "failed" else f"failed: {row.failure_reason}"
        table.add_row(str(rank), row.name, describe_overrides(row.overrides, width=1000), status, str(row.epochs), score)
    return table
