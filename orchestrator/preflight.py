"""Checks a sweep can run before Ray starts: storage, MLflow store, resources, data, the whole space."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from urllib.parse import urlparse

import fsspec
import ray

from .space import Param
from .space_liveness import skeletons
from .spec import SweepSpec
from .trial_data import TrialData, check_trial, data_from_doc
from .yaml_docs import SpecError

# Schemes Ray reaches through pyarrow's own filesystems (no fsspec package needed).
_PYARROW_MODULES = {"s3": "pyarrow._s3fs", "gs": "pyarrow._gcsfs", "gcs": "pyarrow._gcsfs", "hdfs": "pyarrow._hdfs"}


def check_storage(uri: str, field: str = "storage_path") -> None:
    """The storage path is a writable local folder (or one that can be created), or a URI whose
    filesystem is installed (no connection is made).

    Raises:
        SpecError: naming the scheme and the package that would provide it.
    """
    scheme = urlparse(uri).scheme if "://" in uri else "file"
    if scheme in ("file", "local"):
        if problem := _unwritable(os.path.abspath(uri.removeprefix("file://").removeprefix("local://"))):
            raise SpecError(
                f"{field}={uri!r}: {problem}; allowed: a writable folder (created if missing) "
                "or a URI whose filesystem is installed"
            )
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
            f"{field}={uri!r}: no filesystem for {scheme}:// is installed ({e}); "
            "allowed: a local path or a URI whose fsspec/pyarrow filesystem is installed (e.g. s3fs, gcsfs)"
        ) from None


def _unwritable(path: str) -> str | None:
    """Why the folder `path` cannot hold a sweep's files (None when it can): it is a file, or
    neither it nor the nearest folder above it that exists takes a new file."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} is a file"
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass  # a real write: os.access says yes to root on read-only and virtual filesystems
    except OSError as e:
        return f"{existing} is not writable ({e.strerror})"
    return None


def check_tracking(uri: str, timeout_s: float = 5.0, field: str = "mlflow.tracking_uri") -> None:
    """The MLflow store can be reached: a server answers /health; a SQLite file's folder exists.

    Raises:
        SpecError: naming `field` (the spec's, or the flag or argument that gave `uri`), its value and why.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
        except (OSError, urllib.error.URLError) as e:
            reason = getattr(e, "reason", e)
            raise SpecError(f"{field}={uri!r}: no MLflow server answers ({reason})") from None
    elif parsed.scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise SpecError(f"{field}={uri!r}: the folder {folder!r} of the SQLite file does not exist")
    elif parsed.scheme not in ("", "file", "databricks", "postgresql", "mysql", "mssql"):
        raise SpecError(
            f"{field}={uri!r}; allowed: sqlite:///FILE, http(s)://SERVER, a local folder, or a database URI"
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
    check_gpus(spec)
    data = data_from_doc(spec.data, spec.baseline.model.image_size)
    try:
        spec.suite.with_heldout(data.heldout).check()
    except ValueError as e:
        raise SpecError(f"{spec.source}: {e}") from None
    workers = spec.resources.workers_per_trial
    try:
        check_trial(spec.baseline, data, workers)
    except ValueError as e:
        raise SpecError(f"{spec.source}: trial: {e}") from None
    for i, point in enumerate(spec.points_to_evaluate):
        try:
            check_trial(spec.config_for(point), data, workers)
        except ValueError as e:
            raise SpecError(f"{spec.source}: points_to_evaluate[{i}]: {e}") from None
    check_space(spec, data)
    return data


def check_gpus(spec: SweepSpec) -> None:
    """A GPU request needs GPUs: on a local Ray (no `RAY_ADDRESS`) this machine's, as torch sees
    them. (Ray would queue the trial for a GPU that never comes, at "epoch 0" forever.)

    Raises:
        SpecError: naming `resources.gpus_per_worker` and what this machine has.
    """
    wanted = spec.resources.gpus_per_worker
    if wanted <= 0 or (os.environ.get("RAY_ADDRESS") and not ray.is_initialized()):
        return  # a cluster's GPUs are checked against its resources once connected (`plan_resources`)
    if ray.is_initialized():
        have, where = ray.cluster_resources().get("GPU", 0.0), "the connected Ray cluster"
    else:
        import torch  # only here: most sweeps never ask, and the import costs seconds

        have, where = torch.cuda.device_count(), "this machine (no RAY_ADDRESS: a local Ray)"
    if have < wanted:
        raise SpecError(
            f"{spec.source}: resources.gpus_per_worker={wanted:g}, but {where} has {'no GPU' if not have else f'{have:g} GPUs'}; "
            f"allowed: 0 here, or submit the sweep to a cluster with GPUs (`ray job submit`)"
        )


def resource_warnings(spec: SweepSpec, cores: int | None = None) -> list[str]:
    """What would oversubscribe this machine's cores on a local Ray (none on a cluster)."""
    if os.environ.get("RAY_ADDRESS") or ray.is_initialized():
        return []
    cores = cores or os.cpu_count() or 1
    r, said = spec.resources, []
    per_trial = r.workers_per_trial * r.cpus_per_worker
    if per_trial > cores:
        said.append(
            f"resources.workers_per_trial={r.workers_per_trial} x cpus_per_worker={r.cpus_per_worker:g} asks for "
            f"{per_trial:g} CPUs on {cores} CPU cores: the workers share them and each runs slower"
        )
    fits = max(1, int(cores // max(per_trial, 1e-9)))
    if spec.search.max_concurrent is not None and spec.search.max_concurrent > fits:
        said.append(
            f"search.max_concurrent={spec.search.max_concurrent} runs that many trials at once on {cores} CPU cores; "
            f"{fits} at a time keep each trial's workers on their own cores"
        )
    return said


def check_space(spec: SweepSpec, data: TrialData) -> None:
    """Every value the searcher can draw fits the data and the workers: each choice and both
    ends of each range, in every combination of the other choices where the field is drawn.

    Raises:
        SpecError: naming `search_space.<field>.values[i]` or `.low`/`.high`, and why.
    """
    ranges = {p.field for p in spec.params if p.type != "choice"}
    workers = spec.resources.workers_per_trial
    verdicts: dict[str, str | None] = {}

    def refusal(overrides: dict[str, object]) -> str | None:
        key = repr(sorted(overrides.items()))
        if key not in verdicts:
            try:
                check_trial(spec.config_for(overrides), data, workers)
                verdicts[key] = None
            except ValueError as e:
                verdicts[key] = str(e)
        return verdicts[key]

    for chosen, drawn in skeletons(spec):
        # Ranges at the baseline's value, so that a refusal is pinned on the value tried.
        context = {n: chosen[n] for n in drawn if n not in ranges}
        for p in spec.params:
            if p.field not in drawn:
                continue
            others = {n: v for n, v in context.items() if n != p.field}
            if refusal(others) is not None:
                continue  # another field's value is refused: its own turn names it
            for where, value in _ends(p):
                if (why := refusal({**others, p.field: value})) is not None:
                    raise SpecError(f"{spec.source}: search_space.{p.field}.{where}={value!r} cannot run: {why}")


def _ends(p: Param) -> list[tuple[str, object]]:
    """(YAML key, value) of what to try: every choice, or both ends of a range."""
    if p.type == "choice":
        return [(f"values[{i}]", v) for i, v in enumerate(p.values)]
    cast = int if p.type == "int" else float
    return [("low", cast(p.low)), ("high", cast(p.high))]
