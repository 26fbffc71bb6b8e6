"""What a sweep keeps: bytes under its storage folder and in its MLflow runs' artifacts.

Printed and logged (parent-run metrics `storage/folder_bytes`, `storage/mlflow_artifact_bytes`)
when a sweep ends, so that a change of `checkpoints.keep` or `mlflow.copy_checkpoints` shows up
in numbers, on a laptop or against a bucket and a tracking server alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs
from mlflow.tracking import MlflowClient

from .keys import PARENT_TAG
from .trial_data import absolute_path

FOLDER_METRIC = "storage/folder_bytes"
ARTIFACTS_METRIC = "storage/mlflow_artifact_bytes"


@dataclass(frozen=True)
class Footprint:
    """A sweep's bytes: under its storage folder (checkpoints, Tune's state, the leaderboard
    files) and among its MLflow runs' artifacts (leaderboard, copied checkpoints)."""

    folder_bytes: int
    mlflow_artifact_bytes: int

    def describe(self, folder: str) -> str:
        return f"storage: {_megabytes(self.folder_bytes)} under {folder}, {_megabytes(self.mlflow_artifact_bytes)} in MLflow artifacts"

    def log(self, client: MlflowClient, parent_id: str) -> None:
        client.log_metric(parent_id, FOLDER_METRIC, self.folder_bytes)
        client.log_metric(parent_id, ARTIFACTS_METRIC, self.mlflow_artifact_bytes)


def sweep_footprint(client: MlflowClient, folder: str, parent_id: str) -> Footprint:
    """The footprint of the sweep stored under `folder` (any pyarrow URI) whose parent MLflow
    run is `parent_id` (its children found by their parent tag)."""
    experiment = client.get_run(parent_id).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'", max_results=10_000)
    runs = [parent_id, *(r.info.run_id for r in children)]
    return Footprint(folder_bytes(folder), sum(_artifact_bytes(client, run) for run in runs))


def folder_bytes(folder: str) -> int:
    """Bytes of every file under `folder` (0 when it does not exist)."""
    fs, root = pyarrow.fs.FileSystem.from_uri(absolute_path(folder))
    found = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
    return sum(info.size or 0 for info in found if info.type == pyarrow.fs.FileType.File)


def _artifact_bytes(client: MlflowClient, run_id: str, path: str | None = None) -> int:
    total = 0
    for item in client.list_artifacts(run_id, path):
        total += _artifact_bytes(client, run_id, item.path) if item.is_dir else item.file_size or 0
    return total


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
