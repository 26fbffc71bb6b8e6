"""`clipsweep train [CONFIG.yaml]`: one trial, alone, with a per-epoch line and a final table.

CONFIG.yaml:
    trial:            # TrialConfig fields, e.g. {objective: {logit_transform: sine}, optim: {epochs: 5}}
    data:             # either the embedded corpus ...
      synthetic: {n: 10000, seed: 0}
                      # ... or shards: {train: DIR, tokenizer: DIR, heldout: DIR (optional)}
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.synthetic10 import TASK_NAMES, chance_levels

from .trial import TrialData, data_from_doc, epoch_history, run_trial


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train one trial config with Ray Train")
    train.add_argument("config", nargs="?", help="YAML with `trial:` and `data:` (default: tiny model, synthetic data)")
    train.add_argument("--workers", type=int, default=1, help="Ray Train workers (default 1)")
    train.add_argument("--epochs", type=int, help="override trial.optim.epochs")
    train.add_argument("--storage", help="checkpoint storage path or URI (default ~/ray_results)")
    train.add_argument("--name", help="run name under the storage path (default trial-<time>; an existing name resumes it)")
    train.add_argument("--resume", help="checkpoint directory to continue from")
    train.add_argument("--tier", choices=("cheap", "full"), default="cheap", help="synthetic10 tier each epoch")
    train.set_defaults(func=train_command)


def load_train_config(path: str | None, epochs: int | None = None) -> tuple[TrialConfig, TrialData]:
    """Reads and validates CONFIG.yaml (or the defaults) before anything starts.

    Raises:
        ValueError: an unknown key or bad value, named by its path in the file.
    """
    doc: dict[str, Any] = {}
    if path is not None:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        unknown = sorted(set(doc) - {"trial", "data"})
        if unknown:
            raise ValueError(f"{path}: unknown top-level key {unknown[0]!r}; allowed: trial, data")
    trial = dict(doc.get("trial") or {})
    if epochs is not None:
        trial["optim"] = {**trial.get("optim", {}), "epochs": epochs}
    cfg = TrialConfig.from_dict(trial)
    return cfg, data_from_doc(doc.get("data"), cfg.model.image_size)


def train_command(args: argparse.Namespace, console: Console) -> None:
    """Runs `clipsweep train` for parsed arguments."""
    cfg, data = load_train_config(args.config, args.epochs)
    console.print(
        f"training {data.n_train} items with {args.workers} worker(s), global batch {cfg.optim.batch_size}, "
        f"{cfg.optim.epochs} epochs"
    )
    result = run_trial(
        cfg, data, workers=args.workers, storage_path=args.storage, name=args.name, resume_from=args.resume, eval_tier=args.tier
    )
    history = epoch_history(result)
    final = history[-1] if history else result.metrics
    if "bench/mean_primary" not in final:
        console.print(f"final loss {final['loss/total']:.4f} (no held-out split, no benchmark)")
        return
    chance = chance_levels()
    table = Table(title=f"synthetic10 ({args.tier} tier) after epoch {final['epoch']}: primary metrics")
    for column in ("task", "primary", "chance"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task in TASK_NAMES:
        level = chance.get(task)
        table.add_row(task, f"{final[f'bench/{task}/primary']:.3f}", "~0" if level is None else f"{level:.3f}")
    table.add_row("mean", f"{final['bench/mean_primary']:.3f}", "")
    console.print(table)
    console.print(f"checkpoint: {result.checkpoint.path if result.checkpoint else None}")


