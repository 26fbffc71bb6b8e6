"""Same config, same seed, same W, same machine: the same numbers, epoch by epoch (real Ray Train).

Every random draw of a trial derives from `optim.seed` (`trainers/seeding.py`): initial
weights, the per-epoch order, crops, caption draws, paper C's views, hard-batch grouping and
dropout. A run resumed from epoch 1's checkpoint continues the same streams, whether a Tune
trial's actor (`run_trial_in_actor`, a sweep's one-worker default) or a TorchTrainer trains it.
The same holds on the streamed path (`data.stream: true`, the path of sets too large to hold),
at W=1 and W=2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil

import pytest
import torch
import yaml
from image_text_sources import corpus_samples, write_img2dataset_parquet
from run_metrics import checkpoint_metrics

from clipsweep.orchestrator.cli import main
from clipsweep.orchestrator.trial import epoch_history, run_trial, run_trial_in_actor
from clipsweep.orchestrator.trial_data import TrialData
from clipsweep.trainers.checkpoint import load_metrics
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.report_keys import CHECKPOINT_PATH_KEY

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
def data(small_data) -> TrialData:
    return small_data  # decoded once, as a sweep's trials share it


def test_one_worker_repeats_exactly_differs_by_seed_and_resumes_exactly(data, tmp_path):
    """In a sweep's trial actor (`run_trial_in_actor`), and continued by a TorchTrainer."""
    threads = torch.get_num_threads()  # the actor's session sets a worker's thread count
    try:
        runs: dict[str, list[dict]] = {"first": [], "again": [], "other": []}
        for name, seed in (("first", 7), ("again", 7), ("other", 8)):
            run_trial_in_actor(_config(seed, **DRAWS_A_LOT), data, str(tmp_path / name), runs[name].append)
        first, again, other = (_kept(runs[name]) for name in ("first", "again", "other"))
        assert first == again
        assert len(first) == 2 and first[1]["bench/mean_primary"] > 0
        for epoch in range(2):
            assert first[epoch]["loss/total"] != other[epoch]["loss/total"]
        assert first[1]["bench/mean_primary"] != other[1]["bench/mean_primary"]

        # A TorchTrainer resumed from the actor's epoch-1 checkpoint trains epoch 2 exactly:
        # one loop, one checkpoint format, whichever process runs it.
        paths = [r[CHECKPOINT_PATH_KEY] for r in runs["first"]]
        assert [os.path.dirname(p) for p in paths] == [str(tmp_path / "first")] * 2  # where Ray Train keeps them
        assert [load_metrics(p)["epoch"] for p in paths] == [1, 2]
        resumed = run_trial(_config(7, **DRAWS_A_LOT), data, workers=1, storage_path=str(tmp_path), name="resumed",
                            resume_from=paths[0])  # fmt: skip
        assert _numbers(resumed) == first[1:]

        shutil.rmtree(paths[1])  # the actor died during epoch 2: a restart continues after epoch 1,
        restarted: list[dict] = []
        run_trial_in_actor(_config(7, **DRAWS_A_LOT), data, str(tmp_path / "first"), restarted.append)
        # ... first sending epoch 1's report again (the driver may not have had it), with its checkpoint
        assert [r["epoch"] for r in restarted] == [1, 2] and _kept(restarted) == first
        assert restarted[0][CHECKPOINT_PATH_KEY] == paths[0]
    finally:
        torch.set_num_threads(threads)


def test_a_streamed_set_repeats_and_a_restart_continues_exactly_in_the_trial_actor(data, tmp_path):
    """`data.stream: true`: decoded as it streams, every epoch, in file order (`preserve_order`,
    the read included: it failed before `read_shards` set it), shuffled through a local buffer
    seeded from (seed, epoch, rank): at W=1 two runs give the same numbers, and a trial
    restarted after epoch 1 trains epoch 2 to them."""
    streamed = dataclasses.replace(data, stream=True, decoded=None)
    cfg = _config(5)
    threads = torch.get_num_threads()
    try:
        whole: list[dict] = []
        run_trial_in_actor(cfg, streamed, str(tmp_path / "w1"), whole.append)
        again: list[dict] = []
        run_trial_in_actor(cfg, streamed, str(tmp_path / "w1-again"), again.append)
        assert _kept(again) == _kept(whole)
        # A restart after epoch 1 executes the stream again, in new Ray Data tasks: epoch 2 must
        # come out the same (before the fix, even epoch 1 of two fresh runs differed).
        restarted = tmp_path / "w1-restarted"
        shutil.copytree(whole[0][CHECKPOINT_PATH_KEY], restarted / "checkpoint_000001")
        after_restart: list[dict] = []
        run_trial_in_actor(cfg, streamed, str(restarted), after_restart.append)
        assert len(whole) == 2 and _kept(after_restart) == _kept(whole)
    finally:
        torch.set_num_threads(threads)


def test_img2dataset_parquet_streamed_on_two_workers_repeats_and_resumes_exactly(small_corpus, tmp_path):
    """`clipsweep train --workers 2` from img2dataset Parquet, streamed: each rank reads its own
    files (every second one, in order; 3 files, so rank 0 streams two and rank 1 one, and both
    stop when rank 1 runs out), its 2 broken samples skipped and counted every epoch. The same
    seed gives the same numbers, and a run resumed from epoch 1 trains epoch 2 to them, its
    stream executed anew by other Ray Data tasks. (Ray Train's `streaming_split`, used before,
    handed blocks to whichever rank asked first: the resumed epoch 2 came out different.)"""
    folder = str(tmp_path / "i2d")
    write_img2dataset_parquet(corpus_samples(small_corpus), folder, shards=3, faults={40: "no_caption", 200: "no_image"})
    config = tmp_path / "streamed.yaml"
    config.write_text(yaml.safe_dump({
        "trial": {"optim": {"batch_size": 64, "warmup_steps": 2, "lr": 2e-3, "seed": 5}},
        "data": {"train": folder, "tokenizer": small_corpus.tokenizer_dir, "heldout": small_corpus.split_dir("heldout"), "stream": True},
    }))  # fmt: skip
    train = ["train", str(config), "--workers", "2", "--epochs", "2", "--storage", str(tmp_path)]
    for name in ("whole", "again"):
        assert main([*train, "--name", name]) == 0
    whole = checkpoint_metrics(str(tmp_path / "whole"))
    assert _kept(checkpoint_metrics(str(tmp_path / "again"))) == _kept(whole)
    # Rank 1's 182 rows less 1 skipped make 5 local batches of 32.
    assert [(m["epoch"], m["steps"], m["data/skipped"]) for m in whole] == [(1, 5, 2), (2, 5, 2)]
    kept = [d for d in sorted((tmp_path / "whole").iterdir()) if d.name.startswith("checkpoint_")]
    first = next(d for d in kept if load_metrics(str(d))["epoch"] == 1)
    assert main([*train, "--name", "resumed", "--resume", str(first)]) == 0
    assert _kept(checkpoint_metrics(str(tmp_path / "resumed"))) == _kept(whole)[1:]


# Papers B and C with re-clustering every epoch: k-means on embeddings gathered from both ranks.
PAPERS_B_AND_C = {
    "negatives": {"weighting": "cluster_both", "n_clusters_image": 8, "n_clusters_text": 8, "features": "current"},
    "batching": {"mode": "cluster_hard", "n_clusters": 6},
}


def test_two_workers_train_papers_b_and_c_and_repeat_exactly(data, tmp_path):
    """Re-clustered negatives and cluster-filled batches on 2 Train workers: both train, and a
    second run of the same seed repeats every loss and benchmark number."""
    cfg = _config(3, **PAPERS_B_AND_C)
    runs = [run_trial(cfg, data, workers=2, storage_path=str(tmp_path), name=f"w2-{i}") for i in range(2)]
    assert _numbers(runs[0]) == _numbers(runs[1])
    history = epoch_history(runs[0])
    assert [m["epoch"] for m in history] == [1, 2]
    assert all(math.isfinite(m["loss/total"]) and m["steps"] == (data.n_train // 2) // 32 for m in history)
    # 6 clusters over ~270 items per rank: a random batch of 32 would touch all 6.
    assert all(m["batch_clusters"] <= 3.0 for m in history), [m["batch_clusters"] for m in history]
