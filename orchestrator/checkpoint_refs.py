"""Each run's best checkpoint in MLflow: a reference by default, a copy when asked.

A sweep's checkpoints live under its storage path (`checkpoints.keep` says which). MLflow gets
the best one's URI (the `clipsweep.best_checkpoint` tag, and a line of the run's description);
`mlflow.copy_checkpoints: true` also copies it into the run's artifacts (`checkpoint/`). A copy
of a large checkpoint to a remote store takes minutes, so it runs on a thread of its own, never
on Tune's event loop, and talks only to the artifact store: the tracker stays the one writer of
the tracking store. The finalists open a run's best checkpoint from either place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import ray.train
from mlflow.artifacts import get_artifact_repository
from mlflow.tracking import MlflowClient
from pyarrow.fs import FileSystem, FileType

from clipsweep.trainers.checkpoint import CHECKPOINT_FILE

from .keys import BEST_CHECKPOINT_TAG
from .stores import download

COPY_FOLDER = "checkpoint"  # the copy's folder among the run's artifacts

logger = logging.getLogger(__name__)


def reference_note(path: str) -> str:
    """The line of a run's description that says where its best checkpoint is."""
    return f"best checkpoint: `{path}`"


class CheckpointCopier:
    """Copies checkpoints into runs' artifacts, one at a time, off the calling thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipsweep-checkpoint-copy")
        self._pending: list[Future] = []

    # Tune pickles its callbacks with the experiment's state: a restored copier starts empty.
    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def copy(self, path: str, artifact_uri: str, tracking_uri: str) -> None:
        """Queues a copy of checkpoint `path` (any URI) into `<artifact_uri>/checkpoint` (a run's
        artifact URI in store `tracking_uri`, which resolves a server's `mlflow-artifacts:`)."""
        self._pending.append(self._pool.submit(_copy, path, artifact_uri, tracking_uri))

    def wait(self) -> None:
        """Returns when every queued copy has ended; a failed copy is logged, not raised (the
        checkpoint is still where the reference points)."""
        for future in self._pending:
            if future.exception() is not None:
                logger.warning("could not copy a checkpoint into MLflow: %s", future.exception())
        self._pending.clear()


def _copy(path: str, artifact_uri: str, tracking_uri: str) -> None:
    # as_directory downloads a remote (s3://, gs://) checkpoint; a local one is used in place.
    with ray.train.Checkpoint(path).as_directory() as directory:
        if not os.path.isfile(os.path.join(directory, CHECKPOINT_FILE)):  # MLflow would copy an empty folder
            raise FileNotFoundError(f"{path}: no {CHECKPOINT_FILE} to copy")
        get_artifact_repository(artifact_uri, tracking_uri=tracking_uri).log_artifacts(directory, COPY_FOLDER)


@contextlib.contextmanager
def best_checkpoint(client: MlflowClient, run_id: str) -> Iterator[str]:
    """A local directory holding run `run_id`'s best checkpoint: where its reference points,
    else its copy in MLflow.

    Raises:
        FileNotFoundError: the reference points nowhere and the run has no copy.
    """
    path = client.get_run(run_id).data.tags.get(BEST_CHECKPOINT_TAG)
    if path is not None and _exists(path):
        with ray.train.Checkpoint(path).as_directory() as directory:
            yield directory
        return
    if any(a.path == COPY_FOLDER for a in client.list_artifacts(run_id)):
        with tempfile.TemporaryDirectory() as directory:
            yield download(client, run_id, COPY_FOLDER, directory)
        return
    raise FileNotFoundError(
        f"run {run_id}: its best checkpoint is gone from {path!r} and MLflow holds no copy "
        f"(`mlflow.copy_checkpoints: true` keeps one there)"
    )


def _exists(path: str) -> bool:
    fs, root = FileSystem.from_uri(path)
    return fs.get_file_info(root).type == FileType.Directory
