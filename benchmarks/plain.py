"""The plain single-process loop the benchmarks compare against: no Ray, no MLflow.

Same model, objective and global batch as a clipsweep trial, on images decoded once into
memory (no per-epoch augmentation), AdamW with grad clipping, optional synthetic10 evaluation
after each epoch.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow.parquet as pq
import torch

from clipsweep.orchestrator.trial_data import TrialData
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.loading import Preprocess, to_torch
from clipsweep.trainers.data.shards import resolve_shards
from clipsweep.trainers.evaluation.suite import flatten
from clipsweep.trainers.evaluation.synthetic10 import load_eval_set, score_synthetic10
from clipsweep.trainers.models.dual_encoder import DualEncoder
from clipsweep.trainers.objectives import ContrastiveObjective, ObjectiveInputs, WorkerGroup


def in_memory(cfg: TrialConfig, data: TrialData) -> dict[str, Any]:
    """Every training item preprocessed once: tensors by column."""
    table = pq.read_table(resolve_shards(data.train), columns=["id", "image", "caption", "captions", "label"])
    batch = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    return to_torch(Preprocess(data.tokenizer_dir, image_size=cfg.model.image_size)(batch))


def plain_epochs(cfg: TrialConfig, data: TrialData, tensors: dict[str, Any], evaluate: bool = False) -> list[dict[str, float]]:
    """Trains `cfg.optim.epochs` epochs of the cross-modal objective; per epoch: samples/s,
    seconds (training plus evaluation) and, with `evaluate`, the synthetic10 mean primary."""
    torch.manual_seed(cfg.optim.seed)
    model = DualEncoder(cfg.model, cfg.objective)
    objective = ContrastiveObjective(cfg, cfg.model.embed_dim, group=WorkerGroup())
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    eval_set = load_eval_set(data.heldout, "cheap", cfg.model.image_size) if evaluate and data.heldout else None
    b = cfg.optim.batch_size
    epochs = []
    for _ in range(cfg.optim.epochs):
        start, steps = time.perf_counter(), 0
        model.train()
        for i in range(0, len(tensors["id"]) - b + 1, b):
            u, v = model(tensors["image"][i : i + b], tensors["input_ids"][i : i + b], tensors["attention_mask"][i : i + b])
            loss = objective(ObjectiveInputs(u, v), model.logit_scale, {"clip": 1.0})["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            model.clamp_logit_scale()
            steps += 1
        trained = time.perf_counter() - start
        epoch = {"samples_per_s": steps * b / trained}
        if eval_set is not None:
            epoch["score"] = flatten(score_synthetic10(model, eval_set, data.tokenizer_dir, cfg.model.max_length)[0])["bench/mean_primary"]
        epoch["seconds"] = time.perf_counter() - start
        epochs.append(epoch)
    return epochs
