"""Checks a sweep can run before Ray starts: storage filesystem, MLflow store, data, trial sizes."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from urllib.parse import urlparse

import fsspec

from .spec import SpecError, SweepSpec
from .trial import TrialData, check_trial, data_from_doc

# Schemes Ray reaches through pyarrow's own filesystems (no fsspec package needed).
_PYARROW_MODULES = {"s3": "pyarrow._s3fs", "gs": "pyarrow._gcsfs", "gcs": "pyarrow._gcsfs", "hdfs": "pyarrow._hdfs"}


def check_storage(uri: str) -> None:
    """The storage path's filesystem is installed (no connection is made).

    Raises:
        SpecError: naming the scheme and the package that would provide it.
    """
    scheme = urlparse(uri).scheme if "://" in uri else "file"
    if scheme in ("file", "local"):
        parent = os.path.dirname(os.path.abspath(uri.removeprefix("file://"))) or "."
        if not os.path.isdir(parent):
            raise SpecError(f"storage_path={uri!r}: the parent directory {parent!r} does not exist")
        return
    if scheme in _PYARROW_MODULES:
        try:
            __import__(_PYARROW_MODULES[scheme])
            return
        except ImportError:
            pass  # this pyarrow build lacks it; fsspec may still provide it
    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as e:
        raise SpecError(
            f"storage_path={uri!r}: no filesystem for {scheme}:// is installed ({e}); "
            "allowed: a local path or a URI whose fsspec/pyarrow filesystem is installed (e.g. s3fs, gcsfs)"
        ) from None


def check_tracking(uri: str, timeout_s: float = 5.0) -> None:
    """The MLflow store can be reached: a server answers /health; a SQLite file's folder exists.

    Raises:
        SpecError: naming `mlflow.tracking_uri`, its value and why.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
        except (OSError, urllib.error.URLError) as e:
            reason = getattr(e, "reason", e)
            raise SpecError(f"mlflow.tracking_uri={uri!r}: no MLflow server answers ({reason})") from None
    elif parsed.scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise SpecError(f"mlflow.tracking_uri={uri!r}: the folder {folder!r} of the SQLite file does not exist")
    elif parsed.scheme not in ("", "file", "databricks", "postgresql", "mysql", "mssql"):
        raise SpecError(
            f"mlflow.tracking_uri={uri!r}; allowed: sqlite:///FILE, http(s)://SERVER, a local folder, or a database URI"
        )


def check_sweep(spec: SweepSpec) -> TrialData:
    """Every check before Ray starts; returns the data the trials will read.

    Builds the synthetic corpus on first use (no Ray needed), checks the baseline and each
    explicit point against the data and the worker count.

    Raises:
        SpecError / ValueError / DataFormatError: with the field, the value and what is allowed.
    """
    check_storage(spec.storage_path)
    check_tracking(spec.tracking_uri)
    data = data_from_doc(spec.data, spec.baseline.model.image_size)
    try:
        spec.suite.with_heldout(data.heldout).check()
    except ValueError as e:
        raise SpecError(f"{spec.source}: {e}") from None
    workers = spec.resources.workers_per_trial
    check_trial(spec.baseline, data, workers)
    for point in spec.points_to_evaluate:
        check_trial(spec.config_for(point), data, workers)
    return data
