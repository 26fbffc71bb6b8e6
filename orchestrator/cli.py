"""The `clipsweep` command line: owns what the user sees (rich tables and progress)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clipsweep.trainers.data.shards import DataFormatError

from .data_cli import add_data_commands
from .demo import run_demo
from .train_cli import add_train_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipsweep", description="Sweeps of CLIP-style contrastive training variants on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the embedded default on generated data")
    demo.add_argument("--cache-dir", help="where the generated corpus is kept (default $CLIPSWEEP_CACHE or ~/.cache/clipsweep)")
    demo.add_argument("--n", type=int, default=10_000, help="scenes in the demo corpus")
    demo.set_defaults(func=_demo)
    add_train_command(commands)
    add_data_commands(commands)
    return parser


def _demo(args: argparse.Namespace, console: Console) -> None:
    with console.status("preparing the synthetic corpus and streaming one epoch through Ray Data"):
        report = run_demo(args.cache_dir, n=args.n)
    table = Table(title="clipsweep demo: one epoch of the default corpus through Ray Data")
    table.add_column("what")
    table.add_column("value")
    table.add_row("corpus", report.corpus.root)
    table.add_row("train / held-out scenes", f"{report.corpus.rows['train']} / {report.corpus.rows['heldout']}")
    table.add_row("items streamed", str(report.items))
    table.add_row("batches", str(report.batches))
    table.add_row("image batch", str(report.image_shape))
    table.add_row("token batch", str(report.token_shape))
    table.add_row("images/s", f"{report.items / report.seconds:,.0f}")
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `clipsweep` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    try:
        args.func(args, console)
    except (DataFormatError, ValueError) as e:
        # soft_wrap: a path in the message must stay on one line, copyable.
        Console(stderr=True).print(f"[bold red]error:[/bold red] {escape(str(e))}", soft_wrap=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
