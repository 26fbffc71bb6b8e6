"""The train loop's checkpoint format: loading one never runs code.

A checkpoint directory holds `trial.pt`, which contains only tensors, numbers, strings and plain
containers (model, optimizer and scheduler state, cluster tables, pseudo-captions), loaded with
`torch.load(weights_only=True)`, and `metrics.json`, the epoch's report. A file that needs
pickle to load (it could run arbitrary code, e.g. one taken from a shared bucket) is refused.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any

import torch

CHECKPOINT_FILE = "trial.pt"
METRICS_FILE = "metrics.json"


class UnsafeCheckpointError(ValueError):
    """A checkpoint file holds Python objects that only a full unpickle (arbitrary code) loads."""


def save_checkpoint(directory: str, state: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Writes `state` (tensors and plain data) and `metrics` (the epoch's report) to `directory`."""
    torch.save(state, os.path.join(directory, CHECKPOINT_FILE))
    with open(os.path.join(directory, METRICS_FILE), "w") as f:
        json.dump(metrics, f, default=float)  # numpy scalars as floats


def load_checkpoint(directory: str) -> dict[str, Any]:
    """The state a checkpoint directory holds, on the CPU, loaded without unpickling code.

    Raises:
        FileNotFoundError: the directory holds no train-loop checkpoint.
        UnsafeCheckpointError: the file needs pickle to load; it is not opened that way.
    """
    path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory}: no {CHECKPOINT_FILE} (not a clipsweep trial checkpoint)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: refused to load; it holds Python objects beyond tensors and plain data, and "
            f"unpickling them can run arbitrary code (clipsweep checkpoints never need that). {str(e).splitlines()[0]}"
        ) from None


def load_metrics(directory: str) -> dict[str, Any]:
    """The metrics the epoch of a checkpoint directory reported."""
    with open(os.path.join(directory, METRICS_FILE)) as f:
        return json.load(f)
