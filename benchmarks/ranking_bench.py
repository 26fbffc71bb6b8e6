"""Time to rank a large leaderboard: seeds and paired items, Holm, aggregates, mean ranks.

    python benchmarks/ranking_bench.py [--variants 100] [--seeds 3] [--benchmarks 10] [--items 5000] [--resamples 1000]

The benchmarks mix the three primary-metric shapes of paper10: 5 plain top-1 accuracies,
3 mean per-class recalls (100 classes) and 2 retrievals (5 captions per image). Scores are
random per item with a per-variant skill plus a per-seed shift (sd 0.5 points), so some
differences are significant and some not. Prints the median of 3 runs (after a warm-up) and
the share of significant cells.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from clipsweep.orchestrator.ranking import BootstrapSettings, rank_variants
from clipsweep.trainers.evaluation.metrics import ItemScores


def synthetic_items(
    n_variants: int, n_seeds: int, n_benchmarks: int, n_items: int, seed: int = 0
) -> dict[str, list[dict[str, ItemScores]]]:
    """Per-item scores of `n_variants` variants x `n_seeds` runs; skill rises 0.002 per variant."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 100, n_items)
    text_image = np.repeat(np.arange(n_items), 5)
    items: dict[str, list[dict[str, ItemScores]]] = {}
    for v in range(n_variants):
        items["baseline" if v == 0 else f"variant{v:03d}"] = [
            _run(rng, 0.5 + 0.002 * v + rng.normal(0, 0.005), n_benchmarks, n_items, labels, text_image) for _ in range(n_seeds)
        ]
    return items


def _run(rng: np.random.Generator, skill: float, n_benchmarks: int, n_items: int, labels: np.ndarray, text_image: np.ndarray) -> dict[str, ItemScores]:
    """One training run's per-item scores on every benchmark."""
    scores = {}
    for b in range(n_benchmarks):
        kind = "accuracy" if b < n_benchmarks // 2 else "recall" if b < n_benchmarks - 2 else "retrieval"
        if kind == "accuracy":
            scores[f"bench{b}"] = ItemScores.accuracy(rng.random(n_items) < skill)
        elif kind == "recall":
            scores[f"bench{b}"] = ItemScores.class_recall(rng.random(n_items) < skill, labels)
        else:
            hits = rng.random(n_items) < skill
            scores[f"bench{b}"] = ItemScores.retrieval(hits, rng.random(len(text_image)) < skill, text_image)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--benchmarks", type=int, default=10)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    items = synthetic_items(args.variants, args.seeds, args.benchmarks, args.items)
    benchmarks = list(next(iter(items.values()))[0])
    settings = BootstrapSettings(n_resamples=args.resamples)
    rank_variants(items, "baseline", benchmarks, settings)  # warm-up: BLAS threads, page faults
    times, ranking = [], None
    for _ in range(3):
        start = time.perf_counter()
        ranking = rank_variants(items, "baseline", benchmarks, settings)
        times.append(time.perf_counter() - start)
    frame = ranking.frame
    significant = np.mean([(frame[f"{b}_sig"] != 0).mean() for b in benchmarks])
    table = Table(title="ranking_bench: rank_variants (seeds + paired items, Holm, aggregates)")
    for column in ("variants", "seeds", "benchmarks", "items", "resamples", "median s", "min s", "significant cells"):
        table.add_column(column, justify="right")
    table.add_row(
        str(args.variants), str(args.seeds), str(args.benchmarks), f"{args.items:,}", f"{args.resamples:,}",
        f"{statistics.median(times):.2f}", f"{min(times):.2f}", f"{significant:.0%}",
    )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
