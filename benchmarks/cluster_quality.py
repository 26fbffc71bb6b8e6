"""Do paper B's clusters mean anything on the embedded corpus? Adjusted Rand index of the image
clusters each epoch's loss used against the scenes' shape, colour and (colour, shape) labels.

    python benchmarks/cluster_quality.py [--n 3000] [--epochs 3] [--k 20]

Runs the demo's paper B trial (cluster_both, K_I = K_T = 20, batch 128, 3 epochs) as a real
Ray Train trial twice: `features: initial` (the towers at step 0, which the demo has no
pretrained weights for) and `features: current` (re-embedded before every epoch). Each epoch's
checkpoint holds the assignments that epoch trained with. ARI 0 is chance; 1 is the labels.
`lift`: how much likelier two scenes of one cluster share their (colour, shape) than two scenes
drawn at random (1 = no better than chance); it credits clusters that mix a few alike classes.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from sklearn.metrics import adjusted_rand_score

from clipsweep.orchestrator.trial import run_trial
from clipsweep.orchestrator.trial_data import TrialData
from clipsweep.trainers.checkpoint import CHECKPOINT_FILE, load_checkpoint
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.shards import resolve_shards

LABELS = ("shape", "colour", "label")  # label: the (colour, shape) pair, 48 classes


def assignments_by_epoch(run_dir: str) -> dict[int, dict[str, int]]:
    """Each checkpointed epoch's image cluster per item id."""
    out = {}
    for name in sorted(os.listdir(run_dir)):
        if os.path.isfile(os.path.join(run_dir, name, CHECKPOINT_FILE)):
            state = load_checkpoint(os.path.join(run_dir, name))
            out[state["epoch"]] = {i: pair[0] for i, pair in state["assignments"].items()}
    return out


def same_label_lift(labels: list[int], clusters: list[int]) -> float:
    """P(same label | same cluster) / P(same label) over unordered pairs of distinct items."""
    def same_pairs(*keys: list[int]) -> int:
        _, counts = np.unique(np.stack(keys, axis=1), axis=0, return_counts=True)
        return int((counts * (counts - 1)).sum())

    n = len(labels)
    return (same_pairs(labels, clusters) / same_pairs(clusters)) / (same_pairs(labels) / (n * (n - 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="synthetic scenes (the demo's 3,000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--k", type=int, default=20, help="image and text clusters (the demo's point: 20)")
    args = parser.parse_args()
    data = TrialData.synthetic(n=args.n)
    truth = pq.read_table(resolve_shards(data.train), columns=["id", *LABELS]).to_pydict()
    table = Table(title=f"ARI of paper B's image clusters (K={args.k}) vs scene labels, {data.n_train} training scenes")
    for column in ("features", "epoch", *(f"ARI {name}" for name in LABELS), "lift label"):
        table.add_column(column, justify="left" if column == "features" else "right")
    with tempfile.TemporaryDirectory() as folder:
        for features in ("initial", "current"):
            cfg = TrialConfig.from_dict({
                "optim": {"epochs": args.epochs, "batch_size": 128, "warmup_steps": 10},
                "negatives": {"weighting": "cluster_both", "n_clusters_image": args.k, "n_clusters_text": args.k,
                              "features": features},
            })  # fmt: skip
            run_trial(cfg, data, workers=1, storage_path=folder, name=features)
            for epoch, clusters in sorted(assignments_by_epoch(os.path.join(folder, features)).items()):
                kept = [j for j, i in enumerate(truth["id"]) if i in clusters]
                predicted = [clusters[truth["id"][j]] for j in kept]
                scores = [adjusted_rand_score([truth[name][j] for j in kept], predicted) for name in LABELS]
                lift = same_label_lift([truth["label"][j] for j in kept], predicted)
                table.add_row(features, str(epoch), *(f"{s:.3f}" for s in scores), f"{lift:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
