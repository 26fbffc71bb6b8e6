"""A/A calibration of the leaderboard's test: how often is a config called different from itself?

    python benchmarks/aa_calibration.py [--seeds 12] [--k 3 4] [--comparisons 200] [--out DIR] [--fresh]

Trains the demo's baseline (vanilla CLIP with `search_spaces/default.yaml`'s trial settings on
its corpus) with N seeds, and the same config with one more epoch and with twice the epochs
(differences whose sign is known, measured in the same run) with N seeds each: W = 1, two runs
at a time, each scored on synthetic10's full tier from its last checkpoint. Then, with
`ranking.rank_variants`:

- A/A: disjoint groups of k baseline seeds against k others, and (the test before seeds) one
  baseline run against another: the share called significant per benchmark (after Holm), on
  any benchmark, and on the aggregate (mean primary metric); for the first k also by a
  two-level percentile bootstrap (seeds, then items), the design's other option;
- power: k seeds of a longer config against k of the baseline: the share in which it is called
  better, and the gain it measures, in points.

Targets (DESIGN.md "Ranking"): A/A at most 5% after Holm; power at least 80% for a gain of 2
points or more. The per-run scores are kept in `--out`; a later call trains only the runs not
kept there yet (`--fresh`: all again).
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import time

import numpy as np
import ray
import yaml
from rich.console import Console
from rich.table import Table

from clipsweep.orchestrator.ranking import BootstrapSettings, holm, rank_variants, resample_counts, resampled_metrics
from clipsweep.orchestrator.trial import TrialData, data_from_doc, run_trial
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.finalist import evaluate_weights, load_weights
from clipsweep.trainers.evaluation.metrics import ItemScores
from clipsweep.trainers.evaluation.synthetic10 import TASK_NAMES

DEMO = os.path.join(os.path.dirname(__file__), "..", "search_spaces", "default.yaml")
Runs = list[dict[str, ItemScores]]  # one {benchmark: per-item scores} per seed


@ray.remote(num_cpus=0.5)  # a run's driver, as a sweep's trial driver; its Train worker reserves its own CPU
def _train(trial: dict, data: TrialData, storage: str, name: str) -> dict:
    result = run_trial(TrialConfig.from_dict(trial), data, workers=1, storage_path=storage, name=name, callbacks=[])
    with result.checkpoint.as_directory() as directory:  # the last epoch's
        return load_weights(directory)


def train_all(
    configs: dict[str, dict], seeds: int, scores: dict[str, Runs], data: TrialData, out: str, console: Console
) -> dict[str, Runs]:
    """Every config trained with seeds 0..seeds-1 (those not in `scores` yet), two at a time,
    each scored on the full tier."""
    suite = data.default_suite().to_dict()
    scores = {name: list(scores.get(name, []))[:seeds] for name in configs}
    jobs = [(name, seed) for seed in range(seeds) for name in configs if seed >= len(scores[name])]
    for name in configs:
        scores[name] += [None] * (seeds - len(scores[name]))  # type: ignore[list-item]
    pending: dict = {}
    start = time.perf_counter()
    while jobs or pending:
        while jobs and len(pending) < 2:
            name, seed = jobs.pop(0)
            trial = {**configs[name], "optim": {**configs[name]["optim"], "seed": seed}}
            pending[_train.remote(trial, data, os.path.join(out, "runs"), f"{name}-seed{seed}")] = (name, seed, trial)
        [done], _ = ray.wait(list(pending), num_returns=1)
        name, seed, trial = pending.pop(done)
        results, items = evaluate_weights(trial, ray.get(done), suite, data.tokenizer_dir, "full")
        scores[name][seed] = items
        mean = np.mean([r["primary"] for r in results.values()])
        console.print(f"{time.perf_counter() - start:6.0f} s  {name} seed {seed}: full-tier mean primary {mean:.4f}")
    return scores


def _significant(runs_a, runs_b, seed: int) -> tuple[np.ndarray, int, float]:
    """Per benchmark (after Holm) and for the aggregate: -1, 0 or +1 for b against a."""
    ranking = rank_variants({"a": runs_a, "b": runs_b}, "a", TASK_NAMES, BootstrapSettings(n_resamples=1000, seed=seed))
    row = ranking.frame.set_index("variant").loc["b"]
    return np.array([row[f"{b}_sig"] for b in TASK_NAMES]), int(row["aggregate_sig"]), row["aggregate_diff"]


def two_level_bootstrap(runs_a: Runs, runs_b: Runs, seed: int, n_resamples: int = 1000) -> tuple[np.ndarray, int]:
    """The design's other option, for comparison: resample seeds (per side), then items (shared),
    percentile interval and bootstrap p; per benchmark (Holm) and for the aggregate, b vs a."""
    rng = np.random.default_rng(seed)
    k_a, k_b = len(runs_a), len(runs_b)
    pick_a = rng.integers(0, k_a, (n_resamples, k_a))
    pick_b = rng.integers(0, k_b, (n_resamples, k_b)) + k_a
    rows = np.arange(n_resamples)[:, None]
    diffs = []
    for bench in TASK_NAMES:
        scores = [run[bench] for run in runs_a + runs_b]
        boot = resampled_metrics(resample_counts(len(scores[0].hits), n_resamples, rng), scores)  # (R, k_a + k_b)
        diffs.append(boot[rows, pick_b].mean(1) - boot[rows, pick_a].mean(1))
    diffs = np.stack(diffs, axis=1)  # (R, B)
    p = lambda d: np.minimum(1.0, 2 * np.minimum((d <= 0).mean(0), (d >= 0).mean(0)))  # noqa: E731
    bench_p = holm(p(diffs))
    aggregate_p = float(p(diffs.mean(axis=1)))
    return np.where(bench_p < 0.05, np.sign(diffs.mean(0)), 0), int(np.sign(diffs.mean()) if aggregate_p < 0.05 else 0)


def aa_rates(base: Runs, ks: list[int], comparisons: int, rng: np.random.Generator) -> dict[str, tuple]:
    """Shares of A/A comparisons called significant: the item-only test (one run a side, every
    pair of seeds) and the seed-aware one (k seeds a side, disjoint, drawn at random)."""
    pairs = list(itertools.combinations(range(len(base)), 2))
    tests = [("items only (1 run each)", [([base[i]], [base[j]]) for i, j in pairs], _significant)]
    for k in ks:
        groups = [rng.permutation(len(base))[: 2 * k] for _ in range(comparisons)]
        cases = [([base[i] for i in g[:k]], [base[i] for i in g[k:]]) for g in groups]
        tests.append((f"seeds + items ({k} seeds each)", cases, _significant))
        if k == ks[0]:
            tests.append((f"two-level percentile bootstrap ({k} seeds each)", cases, two_level_bootstrap))
    out = {}
    for label, cases, test in tests:
        marks = [test(a, b, c) for c, (a, b) in enumerate(cases)]
        per_bench = np.array([m[0] != 0 for m in marks])
        out[label] = (len(cases), per_bench.any(axis=1).mean(), np.mean([m[1] != 0 for m in marks]), per_bench.mean(axis=0))
    return out


def power(base: Runs, longer: Runs, k: int, comparisons: int, rng: np.random.Generator) -> tuple[int, float, float, np.ndarray]:
    """k seeds of `longer` against k of `base`: share of aggregates called better, mean gain (points)."""
    marks = [
        _significant([base[i] for i in rng.permutation(len(base))[:k]], [longer[i] for i in rng.permutation(len(longer))[:k]], c)
        for c in range(comparisons)
    ]
    return (
        comparisons,
        float(np.mean([m[1] > 0 for m in marks])),
        float(np.mean([m[2] for m in marks]) * 100),
        np.array([m[0] > 0 for m in marks]).mean(axis=0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=12, help="runs per config (N)")
    parser.add_argument("--k", type=int, nargs="+", default=[3, 4], help="seeds per side in a comparison (leaderboard.seeds)")
    parser.add_argument("--comparisons", type=int, default=200)
    parser.add_argument("--out", default=os.path.join("/tmp", "aa_calibration"))
    parser.add_argument("--fresh", action="store_true", help="train every config again, ignoring kept scores")
    args = parser.parse_args()
    console = Console(width=160)
    os.makedirs(args.out, exist_ok=True)
    kept = os.path.join(args.out, "scores.pkl")
    with open(DEMO) as f:
        demo = yaml.safe_load(f)
    base = TrialConfig.from_dict(demo["trial"]).to_dict()
    epochs = base["optim"]["epochs"]
    configs = {
        "baseline": base,
        "one_more_epoch": {**base, "optim": {**base["optim"], "epochs": epochs + 1}},
        "twice_the_epochs": {**base, "optim": {**base["optim"], "epochs": 2 * epochs}},
    }
    scores: dict[str, Runs] = {}
    if os.path.exists(kept) and not args.fresh:  # seeds 0..n-1 of each config, kept by an earlier call
        with open(kept, "rb") as f:
            scores = pickle.load(f)
    if any(len(scores.get(name, [])) < args.seeds for name in configs):
        ray.init(num_cpus=5, configure_logging=False, log_to_driver=False)  # 2 runs x 1.5 CPU + 2 for Ray Data
        scores = train_all(configs, args.seeds, scores, data_from_doc(demo["data"]), args.out, console)
        with open(kept, "wb") as f:
            pickle.dump(scores, f)
    scores = {name: runs[: args.seeds] for name, runs in scores.items()}
    rng = np.random.default_rng(0)
    aggregates = {name: [np.mean([s[b].value() for b in TASK_NAMES]) for s in runs] for name, runs in scores.items()}
    for name, values in aggregates.items():
        console.print(f"{name}: {len(values)} seeds, aggregate {np.mean(values):.4f} (seed sd {np.std(values, ddof=1) * 100:.2f} pts)")

    table = Table(title=f"A/A: the baseline against itself ({args.seeds} seeds of {demo['trial']['optim']['epochs']} epochs)")
    for column in ("test", "comparisons", "any benchmark (Holm)", "aggregate", *TASK_NAMES):
        table.add_column(column, justify="left" if column == "test" else "right")
    ks = [k for k in args.k if 2 * k <= args.seeds]  # A/A needs two disjoint groups
    for label, (n, any_bench, aggregate, per_bench) in aa_rates(scores["baseline"], ks, args.comparisons, rng).items():
        table.add_row(label, str(n), f"{any_bench:.1%}", f"{aggregate:.1%}", *(f"{x:.0%}" for x in per_bench))
    console.print(table)

    table = Table(title="Power: a longer config against the baseline (k seeds each)")
    for column in ("config", "k", "comparisons", "mean gain (pts)", "aggregate called better", *TASK_NAMES):
        table.add_column(column, justify="left" if column == "config" else "right")
    for name, k in itertools.product(("one_more_epoch", "twice_the_epochs"), args.k):
        n, rate, gain, per_bench = power(scores["baseline"], scores[name], k, args.comparisons, rng)
        table.add_row(name, str(k), str(n), f"{gain:+.2f}", f"{rate:.1%}", *(f"{x:.0%}" for x in per_bench))
    console.print(table)


if __name__ == "__main__":
    main()
