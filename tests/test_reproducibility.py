"""Same config, same seed, same W, same machine: the same numbers, epoch by epoch (real Ray Train).

Every random draw of a trial derives from `optim.seed` (`trainers/seeding.py`): initial
weights, the per-epoch order, crops, caption draws, paper C's views, hard-batch grouping and
dropout. A run resumed from epoch 1's checkpoint continues the same streams. A one-worker
trial trained in a Tune actor (`run_trial_in_actor`) gives a TorchTrainer's numbers exactly.
"""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch

from clipsweep.orchestrator.trial import TrialData, epoch_history, run_trial, run_trial_in_actor
from clipsweep.trainers.checkpoint import load_metrics
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.session import CHECKPOINT_PATH_KEY

pytestmark = pytest.mark.usefixtures("ray_local")  # integration: see conftest.py

# Paper C's views and hard batches draw the most random numbers of any config.
DRAWS_A_LOT = {"unimodal": {"image_weight": 0.5, "text_weight": 0.5}, "batching": {"mode": "cluster_hard"}}


def _numbers(result) -> list[dict[str, float]]:
    """Per epoch, every loss term and benchmark metric (what must repeat exactly); NaN (acc@5
    of a task with under 5 classes) as None, so that equal runs compare equal."""
    return _kept(epoch_history(result))


def _kept(reports: list[dict]) -> list[dict[str, float]]:
    """`_numbers` of a list of reports."""
    return [
        {k: (None if math.isnan(v) else v) for k, v in m.items() if k.startswith(("loss/", "bench/")) or k == "logit_scale"}
        for m in reports
    ]


def _config(seed: int, **sections) -> TrialConfig:
    optim = {"epochs": 2, "batch_size": 64, "warmup_steps": 2, "lr": 2e-3, "seed": seed}
    return TrialConfig.from_dict({"optim": optim, **sections})


@pytest.fixture(scope="module")
def data(small_corpus) -> TrialData:
    return TrialData.from_paths(small_corpus.split_dir("train"), small_corpus.tokenizer_dir, small_corpus.split_dir("heldout"))


def test_one_worker_repeats_exactly_differs_by_seed_and_resumes_exactly(data, tmp_path):
    storage = str(tmp_path)
    first = run_trial(_config(7, **DRAWS_A_LOT), data, workers=1, storage_path=storage, name="first")
    again = run_trial(_config(7, **DRAWS_A_LOT), data, workers=1, storage_path=storage, name="again")
    other = run_trial(_config(8, **DRAWS_A_LOT), data, workers=1, storage_path=storage, name="other")
    assert _numbers(first) == _numbers(again)
    assert len(_numbers(first)) == 2 and _numbers(first)[1]["bench/mean_primary"] > 0
    for epoch in range(2):
        assert _numbers(first)[epoch]["loss/total"] != _numbers(other)[epoch]["loss/total"]
    assert _numbers(first)[1]["bench/mean_primary"] != _numbers(other)[1]["bench/mean_primary"]

    after_one = min(epoch_history_paths(first))
    resumed = run_trial(_config(7, **DRAWS_A_LOT), data, workers=1, storage_path=storage, name="resumed", resume_from=after_one)
    assert _numbers(resumed) == _numbers(first)[1:]


def test_two_workers_repeat_exactly(data, tmp_path):
    runs = [run_trial(_config(3), data, workers=2, storage_path=str(tmp_path), name=f"w2-{i}") for i in range(2)]
    assert _numbers(runs[0]) == _numbers(runs[1])
    assert len(_numbers(runs[0])) == 2


def epoch_history_paths(result) -> list[str]:
    """The run's checkpoint directories, oldest epoch first."""
    return sorted(c.path for c, _ in result.best_checkpoints if os.path.isdir(c.path))


def test_a_trial_in_its_tune_actor_trains_exactly_what_a_torch_trainer_does_and_restarts(data, tmp_path):
    cfg = _config(7, **DRAWS_A_LOT)
    threads = torch.get_num_threads()  # the actor's session sets a worker's thread count
    try:
        reports: list[dict] = []
        run_trial_in_actor(cfg, data, str(tmp_path / "actor"), reports.append)
        trainer = run_trial(cfg, data, workers=1, storage_path=str(tmp_path), name="trainer")
        assert _kept(reports) == _numbers(trainer) and len(reports) == 2
        # Checkpoints where Ray Train keeps them, each with its epoch's report.
        paths = [r[CHECKPOINT_PATH_KEY] for r in reports]
        assert [os.path.dirname(p) for p in paths] == [str(tmp_path / "actor")] * 2
        assert [load_metrics(p)["epoch"] for p in paths] == [1, 2]

        shutil.rmtree(paths[1])  # the actor died during epoch 2: a restart continues after epoch 1,
        again: list[dict] = []
        run_trial_in_actor(cfg, data, str(tmp_path / "actor"), again.append)
        # ... first sending epoch 1's report again (the driver may not have had it), with its checkpoint
        assert [r["epoch"] for r in again] == [1, 2] and _kept(again) == _kept(reports)
        assert again[0][CHECKPOINT_PATH_KEY] == paths[0]
    finally:
        torch.set_num_threads(threads)
