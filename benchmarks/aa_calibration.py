"""Calibration of the leaderboard's paired test: coverage, A/A false positives, power, racing.

    python benchmarks/aa_calibration.py [--seeds 12] [--k 3] [--looks 3 10] [--comparisons 200] [--out DIR] [--fresh]

Trains the demo's baseline (vanilla CLIP with `search_spaces/default.yaml`'s trial settings on
its corpus) and three variants on the same seeds 0..N-1, W = 1, two runs at a time, each
scored on synthetic10's full tier from its last checkpoint:
- `one_more_epoch` (4 epochs instead of 3) and `sine` (`logit_transform: sine`): effects whose
  N-seed paired mean is taken as their true effect;
- `salted`: the baseline with `optim.augment_salt: 1`, so seed i shares its initial weights and
  data order with the baseline's seed i but draws other crops and captions: a null whose
  per-seed differences are not identically 0 (the paired A/A).

Then, with `ranking.rank_variants` on random subsets of the common seeds:
- coverage: the share of 95% intervals from k-seed subsets that cover the N-seed mean
  difference, paired (seed i against seed i) and unpaired (the same runs, pairing removed);
- null: how often `salted` is called better or worse than the baseline, on the aggregate and
  on any benchmark after Holm; with k fixed seeds, with the race (`--looks`, seeds added in a
  random order while undecided), and with the naive race that tests every look at alpha;
- power: `one_more_epoch` at k fixed seeds and in the race; and the salted null with every
  benchmark shifted by +delta points (its real noise, a known effect): the smallest delta the
  race finds 80% of the time, and the seeds it spends.

Targets (docs/ranking.md): coverage 93-97%, A/A at most 5%, power 80% for 2 points. The
per-run scores are kept in `--out`; a later call trains only the runs not kept yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import tempfile
import time

import numpy as np
import ray
import yaml
from rich.console import Console
from rich.table import Table

from clipsweep.orchestrator.ranking import BootstrapSettings, rank_variants
from clipsweep.orchestrator.trial import run_trial_in_actor
from clipsweep.orchestrator.trial_data import TrialData, data_from_doc
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.finalist import evaluate_weights, load_weights
from clipsweep.trainers.evaluation.metrics import ItemScores
from clipsweep.trainers.evaluation.synthetic10 import TASK_NAMES

DEMO = os.path.join(os.path.dirname(__file__), "..", "search_spaces", "default.yaml")
Runs = dict[int, dict[str, ItemScores]]  # {seed: {benchmark: per-item scores}}


@ray.remote(num_cpus=1)  # one trial actor's worth: the loop in this process, as a sweep's one-worker trial
def _train(trial: dict, data: TrialData) -> dict:
    reports: list[dict] = []
    with tempfile.TemporaryDirectory() as run_dir:
        run_trial_in_actor(TrialConfig.from_dict(trial), data, run_dir, reports.append)
        return load_weights(reports[-1]["checkpoint_path"])  # the last epoch's


def train_all(configs: dict[str, dict], seeds: int, scores: dict[str, Runs], data: TrialData, console: Console) -> dict[str, Runs]:
    """Every config trained with seeds 0..seeds-1 (those not in `scores` yet), two at a time,
    each scored on the full tier."""
    suite = data.default_suite().to_dict()
    scores = {name: dict(scores.get(name, {})) for name in configs}
    jobs = [(name, seed) for seed in range(seeds) for name in configs if seed not in scores[name]]
    pending: dict = {}
    start = time.perf_counter()
    while jobs or pending:
        while jobs and len(pending) < 2:
            name, seed = jobs.pop(0)
            trial = {**configs[name], "optim": {**configs[name]["optim"], "seed": seed}}
            pending[_train.remote(trial, data)] = (name, seed, trial)
        [done], _ = ray.wait(list(pending), num_returns=1)
        name, seed, trial = pending.pop(done)
        results, items = evaluate_weights(trial, ray.get(done), suite, data.tokenizer_dir, "full")
        scores[name][seed] = items
        mean = np.mean([r["primary"] for r in results.values()])
        console.print(f"{time.perf_counter() - start:6.0f} s  {name} seed {seed}: full-tier mean primary {mean:.4f}")
    return scores


def shifted(runs: Runs, delta: float) -> Runs:
    """Every benchmark's metric moved by +delta (a hit fraction added per item and part):
    the same per-item noise, a known effect."""
    return {s: {b: ItemScores(x.hits + delta * x.counts, x.counts) for b, x in run.items()} for s, run in runs.items()}


def _verdicts(ref: Runs, var: Runs, seeds: list[int], settings: BootstrapSettings, paired: bool = True):
    """(aggregate verdict, any benchmark marked, aggregate lo, hi) of var against ref on `seeds`."""
    runs = {"ref": {s: ref[s] for s in seeds}, "v": {(s if paired else 1000 + s): var[s] for s in seeds}}
    row = rank_variants(runs, "ref", TASK_NAMES, settings).frame.set_index("variant").loc["v"]
    return row["aggregate_verdict"], any(row[f"{b}_sig"] != 0 for b in TASK_NAMES), row["aggregate_diff_lo"], row["aggregate_diff_hi"]


def race(ref: Runs, var: Runs, order: list[int], looks: tuple[int, int], settings: BootstrapSettings, naive: bool = False):
    """Seeds added in `order` from looks[0] to looks[1] while the aggregate is undecided:
    (final verdict, any benchmark marked at the stop, seeds spent)."""
    settings = dataclasses.replace(settings, looks=None if naive else looks)
    for n in range(looks[0], looks[1] + 1):
        verdict, any_bench, _, _ = _verdicts(ref, var, order[:n], settings)
        if verdict != "undecided":
            return verdict, any_bench, n
    return verdict, any_bench, looks[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=12, help="common seeds per config (N)")
    parser.add_argument("--k", type=int, default=3, help="seeds in a fixed comparison (leaderboard.seeds)")
    parser.add_argument("--looks", type=int, nargs=2, default=[3, 10], help="leaderboard.seeds {min, max} of the race")
    parser.add_argument("--comparisons", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=300, help="item bootstrap resamples per ranking")
    parser.add_argument("--out", default=os.path.join("/tmp", "aa_calibration"))
    parser.add_argument("--fresh", action="store_true", help="train every config again, ignoring kept scores")
    args = parser.parse_args()
    console = Console(width=170)
    os.makedirs(args.out, exist_ok=True)
    kept = os.path.join(args.out, "paired_scores.pkl")
    with open(DEMO) as f:
        demo = yaml.safe_load(f)
    base = TrialConfig.from_dict(demo["trial"]).to_dict()
    configs = {
        "baseline": base,
        "salted": {**base, "optim": {**base["optim"], "augment_salt": 1}},
        "one_more_epoch": {**base, "optim": {**base["optim"], "epochs": base["optim"]["epochs"] + 1}},
        "sine": {**base, "objective": {**base["objective"], "logit_transform": "sine"}},
    }
    scores: dict[str, Runs] = {}
    if os.path.exists(kept) and not args.fresh:
        with open(kept, "rb") as f:
            scores = pickle.load(f)
    if any(len(scores.get(name, {})) < args.seeds for name in configs):
        ray.init(num_cpus=4, configure_logging=False, log_to_driver=False)  # 2 runs x 1 CPU + 2 for Ray Data
        data = data_from_doc(demo["data"]).with_decoded_training_set(TrialConfig.from_dict(base))  # once, as a sweep does
        scores = train_all(configs, args.seeds, scores, data, console)
        with open(kept, "wb") as f:
            pickle.dump(scores, f)
        ray.shutdown()
    seeds = list(range(args.seeds))
    base_runs = scores["baseline"]
    aggregate = {name: np.array([np.mean([runs[s][b].value() for b in TASK_NAMES]) for s in seeds]) for name, runs in scores.items()}
    truth = {name: float(np.mean(aggregate[name] - aggregate["baseline"])) for name in configs if name != "baseline"}
    table = Table(title=f"Per-config aggregate over {args.seeds} common seeds (points)")
    for column in ("config", "mean", "seed sd", "Δ vs baseline (N-seed mean)", "corr(seed i, baseline seed i)",
                   "sd of Δ unpaired", "sd of Δ paired"):  # fmt: skip
        table.add_column(column, justify="left" if column == "config" else "right")
    for name, values in aggregate.items():
        b = aggregate["baseline"]
        row = [f"{values.mean() * 100:.2f}", f"{values.std(ddof=1) * 100:.2f}"]
        if name != "baseline":
            row += [f"{truth[name] * 100:+.2f}", f"{np.corrcoef(values, b)[0, 1]:.2f}",
                    f"{np.sqrt(values.var(ddof=1) + b.var(ddof=1)) * 100:.2f}", f"{(values - b).std(ddof=1) * 100:.2f}"]  # fmt: skip
        table.add_row(name, *row)
    console.print(table)

    rng = np.random.default_rng(0)
    settings = BootstrapSettings(n_resamples=args.resamples)
    subsets = [sorted(rng.choice(seeds, args.k, replace=False).tolist()) for _ in range(args.comparisons)]
    orders = [rng.permutation(seeds).tolist() for _ in range(args.comparisons)]
    looks = tuple(args.looks)

    table = Table(title=f"Coverage of the N-seed mean difference by {args.k}-seed intervals ({args.comparisons} subsets, target 93-97%)")
    for column in ("pair", "true Δ (pts)", "paired", "unpaired", "median width paired", "median width unpaired"):
        table.add_column(column, justify="left" if column == "pair" else "right")
    for name in ("one_more_epoch", "sine", "salted"):
        cells = []
        for paired in (True, False):
            bounds = np.array([_verdicts(base_runs, scores[name], s, settings, paired)[2:] for s in subsets])
            cells.append(((bounds[:, 0] <= truth[name]) & (truth[name] <= bounds[:, 1])).mean())
            cells.append(np.median(bounds[:, 1] - bounds[:, 0]) * 100)
        table.add_row(f"{name} - baseline", f"{truth[name] * 100:+.2f}", f"{cells[0]:.1%}", f"{cells[2]:.1%}", f"{cells[1]:.2f}", f"{cells[3]:.2f}")
    console.print(table)

    table = Table(title="Null (paired A/A): salted baseline against the baseline, same seeds (target <= 5%)")
    for column in ("test", "comparisons", "aggregate called", "any benchmark (Holm)", "mean seeds"):
        table.add_column(column, justify="left" if column == "test" else "right")
    fixed = [_verdicts(base_runs, scores["salted"], s, settings) for s in subsets]
    table.add_row(f"fixed, {args.k} seeds, paired", str(len(fixed)), f"{np.mean([v[0] in ('better', 'worse') for v in fixed]):.1%}",
                  f"{np.mean([v[1] for v in fixed]):.1%}", str(args.k))  # fmt: skip
    unpaired = [_verdicts(base_runs, scores["salted"], s, settings, paired=False) for s in subsets]
    table.add_row(f"fixed, {args.k} seeds, unpaired", str(len(unpaired)),
                  f"{np.mean([v[0] in ('better', 'worse') for v in unpaired]):.1%}", f"{np.mean([v[1] for v in unpaired]):.1%}", str(args.k))  # fmt: skip
    for label, naive in ((f"race {looks}, group-sequential", False), (f"race {looks}, naive re-test at alpha", True)):
        races = [race(base_runs, scores["salted"], order, looks, settings, naive) for order in orders]
        table.add_row(label, str(len(races)), f"{np.mean([r[0] in ('better', 'worse') for r in races]):.1%}",
                      f"{np.mean([r[1] for r in races]):.1%}", f"{np.mean([r[2] for r in races]):.2f}")  # fmt: skip
    console.print(table)

    table = Table(title="Power: the aggregate called better (target >= 80% at 2 points)")
    for column in ("effect", "Δ (pts)", f"fixed {args.k} seeds", f"race {looks}", "race: mean seeds", "race: verdicts"):
        table.add_column(column, justify="left" if column == "effect" else "right")
    cases = [("one_more_epoch (real)", scores["one_more_epoch"], truth["one_more_epoch"]), ("sine (real)", scores["sine"], truth["sine"])]
    cases += [(f"salted + {d:g} pts (shifted)", shifted(scores["salted"], d / 100), truth["salted"] + d / 100) for d in (0.5, 1.0, 1.5, 2.0, 3.0)]
    for label, runs, effect in cases:
        fixed_rate = np.mean([_verdicts(base_runs, runs, s, settings)[0] == "better" for s in subsets])
        races = [race(base_runs, runs, order, looks, settings) for order in orders]
        verdicts = {v: sum(r[0] == v for r in races) for v in ("better", "worse", "equivalent", "undecided")}
        table.add_row(label, f"{effect * 100:+.2f}", f"{fixed_rate:.1%}", f"{np.mean([r[0] == 'better' for r in races]):.1%}",
                      f"{np.mean([r[2] for r in races]):.2f}", " ".join(f"{k} {v}" for k, v in verdicts.items() if v))  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
