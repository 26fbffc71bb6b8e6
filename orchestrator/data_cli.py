"""`clipsweep data ...`: generate the synthetic corpus, convert real layouts, train a tokenizer."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clipsweep.trainers.data import converters
from clipsweep.trainers.data.sources import resolve_source, source_captions
from clipsweep.trainers.data.synthetic import generate_synthetic
from clipsweep.trainers.data.tokenizer import build_tokenizer


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Registers `data synthetic | convert {coco,flickr30k,folder} | tokenizer`."""
    data = subparsers.add_parser("data", help="make or convert training/evaluation shards")
    commands = data.add_subparsers(dest="data_command", required=True)

    synthetic = commands.add_parser("synthetic", help="generate the synthetic captioned-scenes corpus")
    synthetic.add_argument("--out", required=True, help="output directory")
    synthetic.add_argument("--n", type=int, default=10_000, help="scenes over both splits (default 10000)")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    synthetic.add_argument("--heldout-fraction", type=float, default=0.1)
    synthetic.add_argument("--rows-per-shard", type=int, default=2048)
    synthetic.add_argument("--no-tokenizer", action="store_true", help="skip training the caption tokenizer")
    synthetic.set_defaults(func=_synthetic)

    convert = commands.add_parser("convert", help="convert a real data set layout to shards")
    layouts = convert.add_subparsers(dest="layout", required=True)
    coco = layouts.add_parser("coco", help="COCO captions JSON + image directory")
    coco.add_argument("--captions", required=True, help="annotations/captions_<split>.json")
    flickr = layouts.add_parser("flickr30k", help="Karpathy split JSON (dataset_flickr30k.json) + image directory")
    flickr.add_argument("--karpathy-json", required=True, help="dataset_flickr30k.json (or dataset_coco.json)")
    flickr.add_argument("--split", action="append", help="keep this Karpathy split (repeatable; default all)")
    folder = layouts.add_parser("folder", help="image directory + captions CSV (file,caption[,label])")
    folder.add_argument("--captions-csv", help="CSV with header file,caption (default IMAGES/captions.csv)")
    for layout in (coco, flickr, folder):
        layout.add_argument("--images", required=True, help="image directory")
        layout.add_argument("--out", required=True, help="output directory")
        layout.add_argument("--rows-per-shard", type=int, default=4096)
        layout.add_argument("--overwrite", action="store_true", help="replace the shards --out already holds")
        layout.set_defaults(func=_convert)

    tokenizer = commands.add_parser("tokenizer", help="train a WordPiece tokenizer on a source's captions")
    tokenizer.add_argument(
        "shards", nargs="+", help="shard files or folders, WebDataset tars or a brace pattern, img2dataset Parquet folder"
    )
    tokenizer.add_argument("--caption-field", help="WebDataset: read captions from this field of {key}.json")
    tokenizer.add_argument("--out", required=True)
    tokenizer.add_argument("--vocab-size", type=int, default=2000)
    tokenizer.set_defaults(func=_tokenizer)


@contextmanager
def _progress(console: Console, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.advance(task, done)


def _synthetic(args: argparse.Namespace, console: Console) -> None:
    with _progress(console, "rendering scenes", args.n) as advance:
        corpus = generate_synthetic(
            args.out,
            n=args.n,
            seed=args.seed,
            image_size=args.image_size,
            heldout_fraction=args.heldout_fraction,
            rows_per_shard=args.rows_per_shard,
            tokenizer=not args.no_tokenizer,
            progress=advance,
        )
    table = Table(title=f"synthetic corpus -> {corpus.root}")
    for column in ("split", "scenes", "shards"):
        table.add_column(column)
    for split, rows in corpus.rows.items():
        table.add_row(split, str(rows), str(len(corpus.shards[split])))
    console.print(table)
    if corpus.tokenizer_dir:
        console.print(f"tokenizer: {corpus.tokenizer_dir}")


def _convert(args: argparse.Namespace, console: Console) -> None:
    if args.layout == "coco":
        items = converters.coco_items(args.captions, args.images)
    elif args.layout == "flickr30k":
        items = converters.karpathy_items(args.karpathy_json, args.images, args.split)
    else:
        csv_path = args.captions_csv or f"{args.images.rstrip('/')}/captions.csv"
        items = converters.folder_items(args.images, csv_path)
    with _progress(console, f"converting {args.layout}", len(items)) as advance:
        summary = converters.write_items(
            items, args.out, args.layout, args.rows_per_shard, progress=advance, overwrite=args.overwrite
        )
    table = Table(title=f"{args.layout} -> {summary.out_dir}")
    for column in ("images written", "captions", "missing", "corrupt", "shards"):
        table.add_column(column)
    table.add_row(
        str(summary.rows), str(summary.captions), str(len(summary.missing)), str(len(summary.corrupt)), str(len(summary.shards))
    )
    console.print(table)
    for path in (summary.missing + summary.corrupt)[:5]:
        console.print(f"[yellow]skipped[/yellow] {path}")


def _tokenizer(args: argparse.Namespace, console: Console) -> None:
    source = resolve_source(args.shards[0] if len(args.shards) == 1 else args.shards, args.caption_field)
    tokenizer = build_tokenizer(source_captions(source), args.out, vocab_size=args.vocab_size)
    console.print(f"tokenizer with {tokenizer.vocab_size} tokens -> {args.out}")
