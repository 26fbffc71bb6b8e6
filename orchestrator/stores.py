"""Where a sweep's MLflow records live, whatever the process's working folder.

MLflow resolves a relative `sqlite:///mlruns.db` against the working folder, and an experiment
created without `artifact_location` against it too (`./mlruns`), at the moment it is created. A
sweep runs from the temp folder (see `sweep.steady_cwd`), so both are fixed here, before: the store
path is made absolute, and a local SQLite store's experiments keep their artifacts in
`mlartifacts/` beside the database file (the folder name `mlflow server` uses by default). A
server (`http://`, `https://`) keeps its own artifact root.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.tracking import MlflowClient

ARTIFACTS_FOLDER = "mlartifacts"
_SQLITE = "sqlite:///"
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"

logger = logging.getLogger(__name__)


def absolute_store(uri: str) -> str:
    """The tracking URI with a local path made absolute (sqlite:///x.db, a folder, file:x)."""
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        return _SQLITE + os.path.abspath(uri[len(_SQLITE) :])
    if "://" not in uri and not uri.startswith("file:"):
        return os.path.abspath(uri)  # a FileStore folder
    return uri


def artifact_root(uri: str) -> str | None:
    """Where a new experiment in store `uri` keeps its artifacts: `mlartifacts/` beside a local
    SQLite file; None (the store's or server's own default) for anything else."""
    uri = absolute_store(uri)
    if not uri.startswith(_SQLITE) or uri == _SQLITE + ":memory:":
        return None
    return (Path(uri[len(_SQLITE) :]).parent / ARTIFACTS_FOLDER).as_uri()


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment `name`, created with its artifact root beside the store if new.

    An existing experiment keeps its location (MLflow cannot move it); one left under the temp
    folder, where a cleaner may delete every artifact its runs point to, gets a warning.
    """
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, artifact_location=artifact_root(uri))
    location = found.artifact_location
    parsed = urlparse(location)
    path = unquote(parsed.path) if parsed.scheme in ("", "file") else None
    beside = artifact_root(uri)
    temp = os.path.realpath(tempfile.gettempdir())
    if path and os.path.realpath(path).startswith(temp + os.sep) and location != beside:
        logger.warning(
            "MLflow experiment %r keeps its artifacts under the temp folder (%s): a temp cleaner deletes "
            "the checkpoints and leaderboards its runs point to. New experiments keep them beside the "
            "store; rename this sweep to start one.",
            name,
            location,
        )
    return found.experiment_id


def download(client: MlflowClient, run_id: str, path: str, dst_path: str | None = None) -> str:
    """A run's artifact on local disk, without MLflow's progress bar (one bar per call, printed
    to the user's console even for a local file)."""
    before = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        return client.download_artifacts(run_id, path, dst_path)
    finally:
        if before is None:
            del os.environ[_PROGRESS_BAR]
        else:
            os.environ[_PROGRESS_BAR] = before
