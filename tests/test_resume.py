"""Every objective family resumes: a real Ray Train run continued from its epoch-1 checkpoint
gives the same later epochs as the run that was never interrupted.

What a checkpoint must carry differs by family: paper B's cluster assignments and centroid
cosine tables (without the tables the first loss after a resume cannot index them), paper C's
batch clusters, paper D's ArcFace proxies and stage; pseudo-captions are mined again from the
frozen text tower when a resumed run re-enters their stage.

Paper C's families (unimodal views, cluster_hard batches) resume exactly in
`test_reproducibility.py`, whose config draws the most random numbers; vanilla CLIP is the
transform family's path with f = identity, and `test_train.py` resumes it through the CLI.
"""

from __future__ import annotations

import math
import os

import pytest

from clipsweep.orchestrator.trial import TrialData, epoch_history, run_trial
from clipsweep.trainers.config import TrialConfig

pytestmark = pytest.mark.usefixtures("ray_local")  # integration: see conftest.py

FAMILIES = {
    "transform": {"objective": {"logit_transform": "sine", "omega": 1.2}},
    "cluster_weight": {"negatives": {"weighting": "cluster_weight", "n_clusters_image": 8}},
    "cluster_mask": {"negatives": {"weighting": "cluster_mask", "n_clusters_image": 8, "n_clusters_text": 8, "threshold": 0.3}},
    "cluster_both": {
        "negatives": {"weighting": "cluster_both", "n_clusters_image": 8, "n_clusters_text": 8, "threshold": 0.3,
                      "features": "current", "recluster_every": 2},
    },  # fmt: skip
    "two_stage_pseudo_captions": {"schedule": {"kind": "two_stage", "stage1_epochs": 2, "pseudo_captions": True}},
}


def _numbers(result) -> list[dict[str, float]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items() if k.startswith("loss/") or k in ("epoch", "logit_scale")}
        for m in epoch_history(result)
    ]


@pytest.fixture(scope="module")
def data(small_corpus) -> TrialData:
    return TrialData.from_paths(small_corpus.split_dir("train"), small_corpus.tokenizer_dir)  # no benchmark: losses only


@pytest.mark.parametrize("family", FAMILIES)
def test_resumes_from_epoch_one(family, data, tmp_path):
    sections = FAMILIES[family]
    epochs = 3 if family.startswith("two_stage") else 2  # resume inside stage 1, where the pseudo-captions are
    cfg = TrialConfig.from_dict({"optim": {"epochs": epochs, "batch_size": 64, "warmup_steps": 2, "lr": 2e-3}, **sections})
    whole = run_trial(cfg, data, workers=1, storage_path=str(tmp_path), name="whole")
    first = sorted(c.path for c, _ in whole.best_checkpoints if os.path.isdir(c.path))[0]
    resumed = run_trial(cfg, data, workers=1, storage_path=str(tmp_path), name="resumed", resume_from=first)
    assert [m["epoch"] for m in _numbers(resumed)] == list(range(2, epochs + 1))
    assert _numbers(resumed) == _numbers(whole)[1:]
