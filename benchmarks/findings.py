"""The four papers' claims against vanilla CLIP at the demo's scale, with adaptive seeds.

    python benchmarks/findings.py [--spec search_spaces/findings.yaml] [--storage DIR]

Runs `search_spaces/findings.yaml` (the baseline and one trial per claim, each a finalist, on
common seeds {min: 3, max: 10}) and prints, per claim: the aggregate's paired difference to the
baseline in points with its 95% (repeated) confidence interval, the verdict and its MDE, the
seeds it spent, and the trial-minutes its runs took (from each MLflow child run's own start and
end); then the sweep's wall time and the compute split between the search and the replicates.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from rich.console import Console
from rich.table import Table

from clipsweep import Sweep
from clipsweep.orchestrator.results import compute_note

SPEC = os.path.join(os.path.dirname(__file__), "..", "search_spaces", "findings.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=SPEC)
    parser.add_argument("--storage", default=os.path.join("/tmp", "clipsweep_findings"))
    args = parser.parse_args()
    console = Console(width=170)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the CLI: no bar per download
    sweep = Sweep.from_yaml(args.spec)
    sweep.spec = dataclasses.replace(
        sweep.spec, storage_path=args.storage, tracking_uri=f"sqlite:///{os.path.join(args.storage, 'mlruns.db')}"
    )
    os.makedirs(args.storage, exist_ok=True)
    start = time.perf_counter()
    result = sweep.run(console=console)
    wall = time.perf_counter() - start
    board = result.ranked()
    trials = result.trials()
    minutes = {
        f.name: trials.loc[trials["name"].isin([r.name for r in board.selection.runs_of(f.name)]), "seconds"].sum() / 60
        for f in board.selection.finalists
    }  # fmt: skip
    table = Table(title=f"Findings: each claim against {board.ranking.reference} (synthetic10 full tier, paired by seed)")
    for column in ("claim", "variant", "Δ pts [95% CI]", "verdict", "MDE pts", "seeds", "trial-min"):
        table.add_column(column, justify="left" if column in ("claim", "variant", "verdict") else "right")
    knobs = board.knobs()
    for row in board.frame().itertuples():
        interval = "reference" if row.reference else f"{row.aggregate_diff * 100:+.2f} [{row.aggregate_diff_lo * 100:+.2f}, {row.aggregate_diff_hi * 100:+.2f}]"
        table.add_row(knobs[row.variant], row.variant, interval, "—" if row.reference else row.aggregate_verdict,
                      "" if row.reference else f"{row.aggregate_mde_pts:.2f}", str(row.seeds), f"{minutes[row.variant]:.1f}")  # fmt: skip
    console.print(table)
    console.print(f"sweep wall time {wall / 60:.1f} min; {compute_note(trials)}")


if __name__ == "__main__":
    main()
