"""Reading a Ray Train run folder back the way the tests check it (no Ray needed)."""

from __future__ import annotations

import os
from typing import Any

from clipsweep.trainers.checkpoint import METRICS_FILE, load_metrics


def checkpoint_metrics(run_dir: str) -> list[dict[str, Any]]:
    """The metrics saved in each checkpoint of a run folder, by epoch."""
    found = [os.path.join(run_dir, d) for d in os.listdir(run_dir) if os.path.isfile(os.path.join(run_dir, d, METRICS_FILE))]
    return sorted((load_metrics(d) for d in found), key=lambda m: m["epoch"])
