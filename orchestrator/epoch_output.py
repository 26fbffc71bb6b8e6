"""A trial's progress on the console, watched from the driver: one line per epoch as its
checkpoint lands (`EpochLog` prints the same lines from Ray Train's controller)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pyarrow.fs

from clipsweep.trainers.checkpoint import METRICS_FILE

from .epoch_log import epoch_line
from .trial_data import absolute_path


class EpochWatcher(threading.Thread):
    """Calls `say` with each epoch's line as its checkpoint lands in `run_dir` (local or any
    pyarrow URI), from the driver: a line Ray forwards from the Train controller carries a
    "(TrainController pid=...)" prefix and colour codes. Checkpoints there before the start (a
    resumed run's) are not repeated."""

    def __init__(self, run_dir: str, say: Callable[[str], None], every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.fs, self.root = pyarrow.fs.FileSystem.from_uri(absolute_path(run_dir))
        self.say, self.every_s = say, every_s
        self.done = threading.Event()
        self.seen = set(self._finished())

    def _finished(self) -> list[str]:
        """Checkpoint folders whose metrics are written, oldest first."""
        found = self.fs.get_file_info(pyarrow.fs.FileSelector(self.root, allow_not_found=True, recursive=True))
        return sorted(f.path.rsplit("/", 1)[0] for f in found if f.base_name == METRICS_FILE)

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self._report_new()

    def stop(self) -> None:
        """Reports what landed since the last look, then ends the thread."""
        self.done.set()
        self.join()
        self._report_new()

    def _report_new(self) -> None:
        for folder in self._finished():
            if folder not in self.seen:
                with self.fs.open_input_stream(f"{folder}/{METRICS_FILE}") as f:
                    try:
                        metrics = json.loads(f.read())
                    except json.JSONDecodeError:  # still being copied into storage: next look
                        continue
                self.seen.add(folder)
                self.say(epoch_line(metrics))
