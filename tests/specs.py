"""A small valid sweep spec over the session's synthetic corpus, for tests that vary one thing."""

from __future__ import annotations

from typing import Any

from clipsweep.trainers.data.synthetic import SyntheticCorpus


def spec_doc(corpus: SyntheticCorpus, folder: str, name: str = "unit", batch_size: int = 64) -> dict[str, Any]:
    """Two epochs searching the logit transform and the temperature; storage and MLflow in `folder`."""
    return {
        "name": name,
        "data": {"train": corpus.split_dir("train"), "tokenizer": corpus.tokenizer_dir, "heldout": corpus.split_dir("heldout")},
        "trial": {"optim": {"epochs": 2, "batch_size": batch_size}},
        "search_space": {
            "objective": {
                "logit_transform": {"type": "choice", "values": ["identity", "sine"]},
                "temperature": {"type": "loguniform", "low": 0.03, "high": 0.1},
            }
        },
        "search": {"num_samples": 4},
        "storage_path": f"{folder}/results",
        "mlflow": {"tracking_uri": f"sqlite:///{folder}/mlruns.db"},
    }
