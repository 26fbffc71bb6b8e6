"""One line per epoch, printed by Ray Train's controller (`EpochLog`) or by the driver.

The controller process imports this module to run the callback, so it imports nothing of
torch or `clipsweep.trainers`: importing those took the controller several seconds of CPU at
every trial start, beside the workers importing them for real.
"""

from __future__ import annotations

from typing import Any

import ray.train


def epoch_line(m: dict[str, Any]) -> str:
    """One epoch's report as a progress line."""
    bench = f"  bench {m['bench/mean_primary']:.3f}" if "bench/mean_primary" in m else ""
    skipped = f"  skipped {m['data/skipped']:.0f} of {m['data/read']:.0f}" if m.get("data/skipped") else ""
    return (f"epoch {m['epoch']} [{m['stage']}]  loss {m['loss/total']:.4f}  "
            f"{m['samples_per_s']:.0f} samples/s  1/t {m['logit_scale']:.1f}{bench}{skipped}")  # fmt: skip


class EpochLog(ray.train.UserCallback):
    """Prints one line per reported epoch (runs in the Train controller; Ray forwards it)."""

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        print(epoch_line(metrics[0]), flush=True)
