"""One trial end to end: `clipsweep train` with 2 Ray Train workers, reports, resume, bad input."""

from __future__ import annotations

import math
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from run_metrics import checkpoint_metrics

from clipsweep.orchestrator.cli import main
from clipsweep.orchestrator.train_cli import load_train_config
from clipsweep.orchestrator.trial import epoch_history, run_trial, run_trial_in_actor
from clipsweep.orchestrator.trial_data import TrialData, check_trial
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.synthetic10 import TASK_NAMES


def _config(tmp_path, corpus, **trial) -> str:
    doc = {
        "trial": {"optim": {"batch_size": 64, "warmup_steps": 2, "lr": 2e-3}, **trial},
        "data": {"train": corpus.split_dir("train"), "tokenizer": corpus.tokenizer_dir, "heldout": corpus.split_dir("heldout")},
    }
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.usefixtures("ray_local")
def test_train_two_workers_reports_each_stage_and_epoch_and_resumes(small_corpus, tmp_path, capsys):
    """Paper D with MCIP on 2 workers through the CLI: stage 1 (image side, ArcFace +
    pseudo-captions), then re-alignment; a resume from epoch 2 continues in the second stage."""
    config = _config(tmp_path, small_corpus, schedule={"kind": "two_stage", "stage1_epochs": 1, "pseudo_captions": True})
    storage = str(tmp_path / "runs")
    argv = ["train", config, "--workers", "2", "--storage", storage]
    assert main(argv + ["--epochs", "2", "--name", "first"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[:3] for line in lines] == [["epoch", "1", "[image]"], ["epoch", "2", "[realign]"]]  # the driver's own, once each
    history = checkpoint_metrics(os.path.join(storage, "first"))
    assert [(m["epoch"], m["stage"]) for m in history] == [(1, "image"), (2, "realign")]
    assert {"loss/arcface", "loss/pseudo_caption"} <= set(history[0]) and "loss/clip" in history[1]
    assert all(math.isfinite(history[0][k]) for k in ("loss/arcface", "loss/pseudo_caption", "loss/total"))
    for task in TASK_NAMES:
        assert 0.0 <= history[1][f"bench/{task}/primary"] <= 1.0
    assert not math.isnan(history[1]["bench/mean_primary"])
    run_dir = os.path.join(storage, "first")
    resume = sorted(p for p in (os.path.join(run_dir, d) for d in os.listdir(run_dir)) if os.path.isdir(p))[-1]
    assert main(argv + ["--epochs", "3", "--name", "resumed", "--resume", resume]) == 0
    assert [line.split()[:3] for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")] == [["epoch", "3", "[realign]"]]
    resumed = checkpoint_metrics(os.path.join(storage, "resumed"))
    assert [(m["epoch"], m["stage"]) for m in resumed] == [(3, "realign")]
    assert resumed[0]["loss/clip"] < history[1]["loss/clip"]  # training went on from epoch 2's weights


def test_one_and_two_workers_give_the_same_loss(small_corpus, small_data, tmp_path):
    """Global negatives are global in the real loop: W=1 and W=2 on the same global batch of 64.

    Both draw the same global batches (one seeded permutation per epoch; rank r of W takes
    every W-th item), but crops and caption draws come from per-rank streams, so the curves are
    compared near initialisation (lr 1e-5), where the loss is about ln(64) = 4.16 with global
    negatives and ln(32) = 3.47 with local ones; 0.15 leaves room for the crops and stays well
    under the 0.69 that local negatives would cost. The exact identity (loss and gradients to
    1e-5) is tests/test_objectives.py's. W=1 trains as a sweep's one-worker trials do, in the
    calling process (the same loop as a TorchTrainer's, tests/test_reproducibility.py).
    """
    cfg, _, _ = load_train_config(_config(tmp_path, small_corpus, optim={"batch_size": 64, "lr": 1e-5}), epochs=2)
    one: list[dict] = []
    threads = torch.get_num_threads()  # the trial sets a worker's thread count in this process
    try:
        run_trial_in_actor(cfg, small_data, str(tmp_path / "w1"), one.append)
    finally:
        torch.set_num_threads(threads)
    two = epoch_history(run_trial(cfg, small_data, workers=2, storage_path=str(tmp_path), name="w2"))
    curves = {1: [m["loss/total"] for m in one], 2: [m["loss/total"] for m in two]}
    assert all(abs(a - b) < 0.15 for a, b in zip(curves[1], curves[2])), curves
    assert all(loss > 3.47 + 0.4 for loss in curves[2]), curves


def test_bad_trial_input_fails_before_ray(small_corpus, tmp_path, capsys):
    data = TrialData.from_paths(small_corpus.split_dir("train"), small_corpus.tokenizer_dir, small_corpus.split_dir("heldout"))
    with pytest.raises(ValueError, match=r"optim.batch_size=64; allowed: a multiple of workers=3"):
        check_trial(TrialConfig.from_dict({"optim": {"batch_size": 64}}), data, 3)
    with pytest.raises(ValueError, match=r"optim.batch_size=4096; allowed: at most the \d+ training items"):
        check_trial(TrialConfig.from_dict({"optim": {"batch_size": 4096}}), data, 1)
    assert data.n_classes == 48 and data.n_train == small_corpus.rows["train"]
    config = _config(tmp_path, small_corpus, objective={"logit_transform": "cosine"})
    assert main(["train", config]) == 2
    assert "objective.logit_transform='cosine'; allowed: identity, sine" in capsys.readouterr().err


def test_config_file_errors_name_the_path(tmp_path, small_corpus):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"trial": {}, "data": {"train": str(tmp_path / "nowhere"), "tokenizer": "x"}}))
    with pytest.raises(Exception, match=r"data.train='.*nowhere' does not exist"):
        load_train_config(str(path))
    heldout_without_scenes = {"train": small_corpus.split_dir("train"), "tokenizer": small_corpus.tokenizer_dir}
    path.write_text(yaml.safe_dump({"data": {**heldout_without_scenes, "heldout": str(tmp_path / "plain")}}))
    os.makedirs(tmp_path / "plain")  # shards as a folder conversion writes them: no scene columns
    pq.write_table(pa.table({"id": ["a"], "image": [b"x"], "caption": ["c"]}), tmp_path / "plain" / "part-00000.parquet")
    with pytest.raises(ValueError, match=r"data.heldout lacks column 'captions'; synthetic10 needs"):
        load_train_config(str(path))
    path.write_text(yaml.safe_dump({"trail": {}}))
    with pytest.raises(ValueError, match=r"unknown field trail; did you mean trial\? allowed: data, suite, trial"):
        load_train_config(str(path))
    path.write_text(yaml.safe_dump({"data": {"synthetic": {"size": 3}}}))
    with pytest.raises(ValueError, match=r"unknown field data.synthetic.size; allowed: n, seed"):
        load_train_config(str(path))


@pytest.mark.usefixtures("ray_local")
def test_a_diverging_worker_fails_the_trial_with_its_reason(small_corpus, tmp_path, capsys):
    """lr 1e30 blows the weights up after one step; the worker raises, the CLI exits 1, no hang."""
    config = _config(tmp_path, small_corpus, optim={"batch_size": 64, "lr": 1e30, "warmup_steps": 1})
    assert main(["train", config, "--epochs", "1", "--storage", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "trial failed" in err and "FloatingPointError" in err and "the trial diverged (optim.lr=1e+30)" in err
