"""A run's best checkpoint in MLflow: the reference by default, the copy when asked, and the
finalists' reading of either (a real SQLite MLflow store, no Ray)."""

from __future__ import annotations

import os
import shutil

import pytest
from mlflow.tracking import MlflowClient

from clipsweep.orchestrator.checkpoint_refs import COPY_FOLDER, CheckpointCopier, best_checkpoint
from clipsweep.orchestrator.keys import BEST_CHECKPOINT_TAG
from clipsweep.orchestrator.stores import experiment_id


def _checkpoint(folder: str, content: bytes) -> str:
    os.makedirs(folder)
    for name in ("trial.pt", "metrics.json"):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(content)
    return folder


def test_the_reference_then_the_copy_then_a_clear_error(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(experiment_id(client, "refs", uri))
    path = _checkpoint(str(tmp_path / "train" / "trial-00" / "checkpoint_000002"), b"epoch 2")
    client.set_tag(run.info.run_id, BEST_CHECKPOINT_TAG, path)

    with best_checkpoint(client, run.info.run_id) as directory:
        assert directory == path  # read in place: no download
    assert client.list_artifacts(run.info.run_id) == []  # a reference only

    copier = CheckpointCopier()
    copier.copy(path, run.info.artifact_uri, uri)
    copier.wait()
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == [COPY_FOLDER]
    shutil.rmtree(path)  # the storage folder was cleaned up; the MLflow copy remains
    with best_checkpoint(client, run.info.run_id) as directory:
        with open(os.path.join(directory, "trial.pt"), "rb") as f:
            assert f.read() == b"epoch 2"

    bare = client.create_run(run.info.experiment_id)
    client.set_tag(bare.info.run_id, BEST_CHECKPOINT_TAG, path)
    with pytest.raises(FileNotFoundError, match="best checkpoint is gone from .* and MLflow holds no copy"):
        with best_checkpoint(client, bare.info.run_id):
            pass


def test_a_failed_copy_is_logged_and_the_sweep_goes_on(tmp_path, caplog):
    copier = CheckpointCopier()
    copier.copy(str(tmp_path / "missing"), (tmp_path / "artifacts").as_uri(), f"sqlite:///{tmp_path}/mlruns.db")
    copier.wait()  # returns: the checkpoint is still where the reference points
    assert "could not copy a checkpoint into MLflow" in caplog.text
