"""The `clipsweep` command line: owns what the user sees (rich tables and progress)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import ray.train
from rich.console import Console
from rich.markup import escape

from .data_cli import add_data_commands
from .sweep_cli import add_sweep_commands
from .train_cli import add_train_command, train_command

_LOG_WIDTH = 1000  # columns of a console that is not a terminal: wider than any table we print


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipsweep", description="Sweeps of CLIP-style contrastive training variants on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train vanilla CLIP on the embedded synthetic corpus")
    demo.add_argument("--workers", type=int, default=2, help="Ray Train workers (default 2)")
    demo.set_defaults(func=_demo)
    add_sweep_commands(commands)
    add_train_command(commands)
    add_data_commands(commands)
    return parser


def _demo(args: argparse.Namespace, console: Console) -> None:
    """The embedded default: vanilla CLIP on the synthetic corpus, full synthetic10 tier."""
    train_args = argparse.Namespace(
        config=None, workers=args.workers, epochs=None, storage=None, name=None, resume=None, tier="full"
    )
    train_command(train_args, console)


def _console(stream: TextIO) -> Console:
    """Rich output on `stream`: the terminal's width, or, in a log (`ray job submit`, `| tee`,
    CI), lines as wide as they need, since rich would cut tables at 80 columns ("mean ra…")."""
    if stream.isatty() or "COLUMNS" in os.environ:
        return Console(file=stream)
    return Console(file=stream, width=_LOG_WIDTH)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `clipsweep` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # MLflow logs its store migrations at INFO with its own handler; the console is ours.
    logging.getLogger("mlflow").setLevel(logging.INFO if args.verbose else logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per download otherwise
    console = _console(sys.stdout)
    try:
        args.func(args, console)
    except (ValueError, OSError) as e:  # bad input (DataFormatError, SpecError) or a path: one line, no traceback
        if args.verbose:
            _console(sys.stderr).print_exception()
        # soft_wrap: a path in the message must stay on one line, copyable.
        _console(sys.stderr).print(f"[bold red]error:[/bold red] {escape(str(e))}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:  # the sweep's open MLflow runs were closed as KILLED on the way out
        _console(sys.stderr).print("[bold red]interrupted[/bold red]: open MLflow runs were closed as KILLED")
        return 130
    except ray.train.TrainingFailedError as e:  # a worker raised: Ray's summary names rank and traceback
        _console(sys.stderr).print(f"[bold red]trial failed:[/bold red] {escape(str(e))}", soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
