"""How a sweep fits its cluster: what one trial reserves, how many run at once, and the logical CPUs of a local Ray."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .ray_start import DATA_CPUS, local_cpus
from .spec import SweepSpec


@dataclass(frozen=True)
class ResourcePlan:
    """How a sweep fits the cluster: per-trial need, concurrent trials, logical CPUs to start."""

    cpus_per_trial: float  # the trial's driver + its workers
    gpus_per_trial: float
    max_concurrent: int
    ray_cpus: int | None  # logical CPUs for a local Ray we start; None when one is connected
    ray_resources: dict[str, float] = dataclasses.field(default_factory=dict)  # custom ones for that local Ray

    def describe(self, spec: SweepSpec) -> str:
        r = spec.resources
        gpus = f", {self.gpus_per_trial:g} GPU" if self.gpus_per_trial else ""
        board = spec.leaderboard
        replicates = (board.finalists + 1) * (board.max_seeds - 1)
        then = f", then up to {replicates} seed replicates (leaderboard.seeds={board.describe_seeds()})" if replicates else ""
        return (
            f"{spec.search.num_samples} trials (baseline + {spec.search.num_samples - 1} searched){then}, "
            f"{self.max_concurrent} at a time; each trial: driver {r.driver_cpus:g} CPU + "
            f"{r.workers_per_trial} worker(s) x {r.cpus_per_worker:g} CPU{gpus} = {self.cpus_per_trial:g} CPU"
        )


def plan_resources(spec: SweepSpec, cluster: dict[str, float] | None = None, cores: int | None = None) -> ResourcePlan:
    """Sizes the sweep so that every running trial's driver and workers fit, with room for data.

    Args:
        spec: the sweep.
        cluster: resources of a connected Ray cluster (`ray.cluster_resources()`); None for a
            local Ray that clipsweep starts, sized from `cores`.
        cores: physical cores of this machine (default `os.cpu_count()`).

    Raises:
        ValueError: one trial needs more than the cluster has (names the resource and amounts).
    """
    r = spec.resources
    cpus = r.driver_cpus + r.workers_per_trial * r.cpus_per_worker
    gpus = r.workers_per_trial * r.gpus_per_worker
    wanted = spec.search.max_concurrent
    if cluster is None:
        cores = cores or os.cpu_count() or 1
        # Workers compute, drivers mostly wait: concurrency follows the cores the workers use.
        slots = max(1, int(cores // max(r.workers_per_trial * r.cpus_per_worker, 1e-9)))
        concurrent = max(1, min(wanted or slots, spec.search.num_samples))
        # A local Ray plays the head node: it holds the drivers' custom resources.
        custom = {name: concurrent * amount for name, amount in r.driver_resources.items()}
        return ResourcePlan(cpus, gpus, concurrent, local_cpus(concurrent * cpus, cores), custom)
    available = cluster.get("CPU", 0.0) - DATA_CPUS
    if cpus > available:
        raise ValueError(
            f"resources: one trial needs {cpus:g} CPUs (driver_cpus={r.driver_cpus:g} + workers_per_trial="
            f"{r.workers_per_trial} x cpus_per_worker={r.cpus_per_worker:g}); allowed: at most {available:g} "
            f"(the cluster's {cluster.get('CPU', 0):g} CPUs less {DATA_CPUS} kept for Ray Data)"
        )
    slots = int(available // cpus) if cpus else spec.search.num_samples
    if gpus:
        if gpus > cluster.get("GPU", 0.0):
            raise ValueError(
                f"resources: one trial needs {gpus:g} GPUs (workers_per_trial={r.workers_per_trial} x "
                f"gpus_per_worker={r.gpus_per_worker:g}); allowed: at most the cluster's {cluster.get('GPU', 0):g}"
            )
        slots = min(slots, int(cluster["GPU"] // gpus))
    for name, amount in r.driver_resources.items():
        if amount > cluster.get(name, 0.0):
            raise ValueError(
                f"resources.driver_resources.{name}={amount:g}; allowed: at most the cluster's {cluster.get(name, 0):g} "
                f"(start the head node with `ray start --head --resources='{{\"{name}\": 64}}'`, or drop the field)"
            )
        slots = min(slots, int(cluster[name] // amount))
    concurrent = max(1, min(wanted or slots, slots, spec.search.num_samples))
    return ResourcePlan(cpus, gpus, concurrent, None)


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    """What a trial's Tune actor reserves: its driver's share, plus its worker's when it trains
    there (a TorchTrainer's workers reserve their own)."""
    r = spec.resources
    resources = {"cpu": r.driver_cpus, **r.driver_resources}
    if r.in_trial_actor:
        resources.update(cpu=r.driver_cpus + r.cpus_per_worker, gpu=r.gpus_per_worker)
    return resources
