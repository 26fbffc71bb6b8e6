"""A checkpoint loads without unpickling code: tensors and plain data only, metrics as JSON."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from clipsweep.trainers.checkpoint import (
    CHECKPOINT_FILE,
    UnsafeCheckpointError,
    load_checkpoint,
    load_metrics,
    save_checkpoint,
)
from clipsweep.trainers.evaluation.finalist import load_weights


class _RunsCode:
    """Unpickling this object calls `open(marker, "w")`: what a hostile checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model": {"w": torch.ones(2)}, "payload": _RunsCode(str(marker))}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(UnsafeCheckpointError, match=r"trial\.pt: refused to load; .*can run arbitrary code"):
        load_checkpoint(str(tmp_path))
    with pytest.raises(UnsafeCheckpointError):
        load_weights(str(tmp_path))
    assert not marker.exists()
    torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)  # the same file, unpickled: the code runs
    assert marker.exists()


def test_the_train_loops_state_round_trips_with_its_metrics(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state = {
        "epoch": 2, "stage": 0, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "assignments": {"a": (1, 2)}, "batch_clusters": {"a": 3},
        "centroid_cosine": {"image": torch.eye(2), "text": torch.eye(1)},
        "pseudo": {"rows": {"a": 0}, "indices": torch.tensor([[0, -1]]), "text": torch.zeros(1, 4)},
    }  # fmt: skip
    save_checkpoint(str(tmp_path), state, {"epoch": 2, "loss/total": np.float32(1.5), "stage": "joint"})
    loaded = load_checkpoint(str(tmp_path))
    assert loaded["assignments"] == {"a": (1, 2)} and loaded["pseudo"]["rows"] == {"a": 0}
    assert torch.equal(loaded["model"]["weight"], model.weight)
    optimizer.load_state_dict(loaded["optimizer"])
    assert load_metrics(str(tmp_path)) == {"epoch": 2, "loss/total": 1.5, "stage": "joint"}


def test_a_folder_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trial.pt"):
        load_checkpoint(str(tmp_path))
    assert not os.listdir(tmp_path)
