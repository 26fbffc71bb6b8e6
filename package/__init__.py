"""clipsweep: sweeps of CLIP-style contrastive training variants on Ray Tune + Ray Train + MLflow.

The public API loads on first use, so a Ray worker that imports `clipsweep.trainers` never
pulls in Tune or MLflow:

    >>> from clipsweep import Sweep
    >>> result = Sweep.from_yaml("search_spaces/default.yaml").run()   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

_API = {
    "Sweep": "clipsweep.orchestrator.sweep",
    "SweepResult": "clipsweep.orchestrator.results",
    "SweepSpec": "clipsweep.orchestrator.spec",
    "SpecError": "clipsweep.orchestrator.yaml_docs",
    "TrialConfig": "clipsweep.trainers.config",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'clipsweep' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_API[name]), name)
