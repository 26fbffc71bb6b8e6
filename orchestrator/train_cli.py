"""`clipsweep train [CONFIG.yaml]`: one trial, alone, with a per-epoch line and a final table.

CONFIG.yaml:
    trial:            # TrialConfig fields, e.g. {objective: {logit_transform: sine}, optim: {epochs: 5}}
    data:             # either the embedded corpus ...
      synthetic: {n: 10000, seed: 0}
                      # ... or shards: {train: DIR, tokenizer: DIR, heldout: DIR (optional)}
    suite:            # optional; default synthetic10 on data's held-out split
      name: paper10   # real data, from local roots (see search_spaces/README.md)
      roots: {cifar10: /data/cifar10, coco: /data/coco}
"""

from __future__ import annotations

import argparse
import os
import time

from rich.console import Console
from rich.table import Table

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.settings import SuiteSettings
from clipsweep.trainers.evaluation.suites import SUITES

from .epoch_output import EpochWatcher
from .preflight import check_storage
from .spec import trial_config
from .trial import epoch_history, run_trial
from .trial_data import TrialData, absolute_path, check_resume, data_from_doc
from .yaml_docs import SpecError, read_yaml, reject_nonfinite, reject_unknown

DEFAULT_STORAGE = "~/ray_results"  # Ray Train's own default


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train one trial config with Ray Train")
    train.add_argument("config", nargs="?", help="YAML with `trial:` and `data:` (default: tiny model, synthetic data)")
    train.add_argument("--workers", type=int, default=1, help="Ray Train workers (default 1)")
    train.add_argument("--epochs", type=int, help="override trial.optim.epochs")
    train.add_argument("--storage", help="checkpoint storage path or URI (default ~/ray_results)")
    train.add_argument("--name", help="run name under the storage path (default trial-<time>; an existing name resumes it)")
    train.add_argument("--resume", help="checkpoint directory to continue from")
    train.add_argument("--tier", choices=("cheap", "full"), help="benchmark tier each epoch (default: the config's suite.tier, cheap)")
    train.set_defaults(func=train_command)


def load_train_config(path: str | None, epochs: int | None = None) -> tuple[TrialConfig, TrialData, SuiteSettings | None]:
    """Reads and validates CONFIG.yaml (or the defaults) before anything starts.

    Raises:
        ValueError: an unknown key or bad value, named by its path in the file.
    """
    source = path or "<defaults>"
    doc = (read_yaml(path, "config") if path is not None else None) or {}
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: the config must be a mapping with trial, data, suite; got {type(doc).__name__}")
    reject_unknown(doc, ("trial", "data", "suite"), "", source)
    reject_nonfinite(doc, source)
    trial = dict(doc.get("trial") or {})
    if epochs is not None:
        trial["optim"] = {**trial.get("optim", {}), "epochs": epochs}
    cfg = trial_config(trial, source)
    data = data_from_doc(doc.get("data"), cfg.model.image_size)
    suite = data.default_suite()
    if doc.get("suite") is not None:
        try:
            suite = SuiteSettings.from_section(doc["suite"]).with_heldout(data.heldout)
        except ValueError as e:
            raise SpecError(f"{source}: {e}") from None
    if suite is not None:
        suite.check()
    return cfg, data, suite


def train_command(args: argparse.Namespace, console: Console) -> None:
    """Runs `clipsweep train` for parsed arguments."""
    # The flags first: they are cheap, and the default data is built on first use.
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}; allowed: >= 1")
    storage = absolute_path(args.storage or os.path.expanduser(DEFAULT_STORAGE))
    check_storage(storage, "--storage")
    if args.resume is not None:
        check_resume(args.resume, "--resume")
    cfg, data, suite = load_train_config(args.config, args.epochs)
    console.print(
        f"training {data.n_train} items with {args.workers} worker(s), global batch {cfg.optim.batch_size}, "
        f"{cfg.optim.epochs} epochs"
    )
    if suite is not None and (note := suite.skipped_note()):
        console.print(note)
    tier = args.tier or (suite.tier if suite is not None else "cheap")
    name = args.name or time.strftime("trial-%Y%m%d-%H%M%S")
    watcher = EpochWatcher(f"{storage}/{name}", lambda line: console.print(line, markup=False, highlight=False))
    watcher.start()
    try:
        result = run_trial(
            cfg, data, workers=args.workers, storage_path=storage, name=name, resume_from=args.resume,
            eval_tier=tier, suite=suite, callbacks=[], quiet=True,
        )
    finally:
        watcher.stop()
    history = epoch_history(result)
    final = history[-1] if history else result.metrics
    if "bench/mean_primary" not in final:
        console.print(f"final loss {final['loss/total']:.4f} (no held-out split, no benchmark)")
        return
    chance = SUITES[suite.name].chance_levels(suite, tier)
    table = Table(title=f"{suite.name} ({tier} tier) after epoch {final['epoch']}: primary metrics")
    for column in ("task", "primary", "chance"):
        table.add_column(column, justify="left" if column == "task" else "right")
    tasks = [k.split("/")[1] for k in final if k.startswith("bench/") and k.endswith("/primary")]
    for task in tasks:
        level = chance.get(task)
        table.add_row(task, f"{final[f'bench/{task}/primary']:.3f}", "~0" if level is None else f"{level:.3f}")
    table.add_row("mean", f"{final['bench/mean_primary']:.3f}", "")
    console.print(table)
    console.print(f"checkpoint: {result.checkpoint.path if result.checkpoint else None}")
