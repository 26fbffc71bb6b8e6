"""synthetic10: tiers, task list, and metric ranges on an untrained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.scenes import ATTRIBUTES
from clipsweep.trainers.evaluation.suite import flatten
from clipsweep.trainers.evaluation.synthetic10 import (
    TASK_NAMES,
    ZERO_SHOT_TASKS,
    load_eval_set,
    score_synthetic10,
)
from clipsweep.trainers.models.dual_encoder import DualEncoder


def test_ten_tasks_eight_zero_shot():
    assert len(TASK_NAMES) == 10 and len(ZERO_SHOT_TASKS) == 8
    for task in ZERO_SHOT_TASKS:
        expected = 48 if task.attribute == "label" else len(ATTRIBUTES[task.attribute])
        assert len(task.class_texts) == expected, task.name


def test_tiers_and_bad_tier(small_corpus):
    full = load_eval_set(small_corpus.split_dir("heldout"), "full", 64)
    assert full.images.shape == (small_corpus.rows["heldout"], 3, 64, 64) and full.images.dtype == np.uint8
    assert len(full.captions) == len(full.images) and all(len(c) == 5 for c in full.captions)
    cheap = load_eval_set(small_corpus.split_dir("heldout"), "cheap", 64)
    assert len(cheap.images) == min(256, len(full.images))
    with pytest.raises(ValueError, match=r"tier='medium'; allowed: cheap, full"):
        load_eval_set(small_corpus.split_dir("heldout"), "medium", 64)


def test_untrained_model_scores_every_task_in_range(small_corpus):
    cfg = TrialConfig()
    torch.manual_seed(0)
    model = DualEncoder(cfg.model, cfg.objective)
    results, _ = score_synthetic10(model, load_eval_set(small_corpus.split_dir("heldout"), "full", 64), small_corpus.tokenizer_dir)
    assert set(results) == set(TASK_NAMES)
    for name, metrics in results.items():
        assert 0.0 <= metrics["primary"] <= 1.0, name
    flat = flatten(results)
    assert flat["bench/mean_primary"] == pytest.approx(np.mean([m["primary"] for m in results.values()]))
    assert flat["bench/retrieval_long/i2t_R@10"] >= flat["bench/retrieval_long/i2t_R@1"]
    assert model.training  # evaluation restores the mode it found
