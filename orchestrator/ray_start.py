"""Starting or joining Ray: the one place that calls `ray.init`, for sweeps and single trials alike."""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import ray

DATA_CPUS = 2  # logical CPUs kept free for Ray Data's decode tasks (with none, no epoch starts)


def local_cpus(needed: float, cores: int | None = None) -> int:
    """Logical CPUs for a local Ray that must hold `needed` CPUs of trials: max(cores, needed +
    DATA_CPUS). The extra two keep Ray Data's decode tasks schedulable next to the Train workers
    (with exactly the cores, 2 workers on 2 cores leave Ray Data no CPU and the first epoch
    never starts)."""
    return max(cores or os.cpu_count() or 1, math.ceil(needed) + DATA_CPUS)


def start_ray(cpus: int | None = None, resources: dict[str, float] | None = None, quiet: bool = True) -> None:
    """Joins the cluster of RAY_ADDRESS, or starts a local Ray with `cpus` logical CPUs (default:
    `local_cpus(0)`) and the custom `resources`; nothing when Ray is already initialised.

    Args:
        quiet: keep workers' logs (Ray Data plans, checkpoint paths, raylet warnings) off this
            console; failures reach the caller through the trial's error instead.
    """
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"configure_logging": False, "log_to_driver": not quiet}
    if quiet:
        # The raylet's warnings ("20 PYTHON worker processes have been started...") reach the
        # driver through a channel that `log_to_driver` does not close, and Ray offers no switch
        # for them (ray-project/ray#63800); they stay in Ray's logs (session_latest/logs/).
        ray._private.worker._worker_logs_enabled = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # the driver's dataset plans and tips
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)
    else:
        ray.init(num_cpus=cpus or local_cpus(0), resources=resources or None, **kwargs)


def require_cpus(needed: float, what: str) -> None:
    """Raises `ValueError` naming `what` when the Ray cluster has fewer CPUs than `needed`."""
    available = ray.cluster_resources().get("CPU", 0)
    if needed > available:
        raise ValueError(f"{what}; allowed: at most {available:g} CPUs in this Ray cluster")
