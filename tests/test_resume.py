"""Every objective family resumes: a trial restarted from its epoch-1 checkpoint gives the same
later epochs as the run that was never interrupted. The trials train as a sweep's one-worker
trials do, in the calling process (`run_trial_in_actor`, no TorchTrainer), and the restart is
the one Tune makes after a trial's process died: its run folder holds epoch 1's checkpoint only.

What a checkpoint must carry differs by family: paper B's cluster assignments and centroid
cosine tables (without the tables the first loss after a resume cannot index them), paper C's
batch clusters, paper D's ArcFace proxies and stage; pseudo-captions are mined again from the
frozen text tower when a resumed run re-enters their stage.

Paper C's families (unimodal views, cluster_hard batches) resume exactly in
`test_reproducibility.py`, whose config draws the most random numbers; vanilla CLIP is the
transform family's path with f = identity, and `test_train.py` resumes it through the CLI
(Ray Train's own restore).
"""

from __future__ import annotations

import dataclasses
import math
import shutil

import pytest
import torch

from clipsweep.orchestrator.trial import run_trial_in_actor
from clipsweep.orchestrator.trial_data import TrialData
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.report_keys import CHECKPOINT_PATH_KEY

pytestmark = pytest.mark.usefixtures("ray_local")  # integration: see conftest.py

# cluster_mask keeps the state cluster_both does (both tables, both assignments): one case covers it.
FAMILIES = {
    "transform": {"objective": {"logit_transform": "sine", "omega": 1.2}},
    "cluster_weight": {"negatives": {"weighting": "cluster_weight", "n_clusters_image": 8}},
    "cluster_both": {
        "negatives": {"weighting": "cluster_both", "n_clusters_image": 8, "n_clusters_text": 8, "threshold": 0.3,
                      "features": "current", "recluster_every": 2},
    },  # fmt: skip
    "two_stage_pseudo_captions": {"schedule": {"kind": "two_stage", "stage1_epochs": 2, "pseudo_captions": True}},
}


def _numbers(reports: list[dict]) -> list[dict[str, float]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items() if k.startswith("loss/") or k in ("epoch", "logit_scale")}
        for m in reports
    ]


@pytest.fixture(autouse=True)
def _threads():
    """The trial sets a worker's torch thread count in this process; the next test gets it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(small_data) -> TrialData:
    return dataclasses.replace(small_data, heldout=None)  # no benchmark: losses only


@pytest.mark.parametrize("family", FAMILIES)
def test_resumes_from_epoch_one(family, data, tmp_path):
    sections = FAMILIES[family]
    epochs = 3 if family.startswith("two_stage") else 2  # resume inside stage 1, where the pseudo-captions are
    cfg = TrialConfig.from_dict({"optim": {"epochs": epochs, "batch_size": 64, "warmup_steps": 2, "lr": 2e-3}, **sections})
    whole: list[dict] = []
    run_trial_in_actor(cfg, data, str(tmp_path / "whole"), whole.append)
    restarted = tmp_path / "restarted"
    shutil.copytree(whole[0][CHECKPOINT_PATH_KEY], restarted / "checkpoint_000001")  # died during epoch 2
    resumed: list[dict] = []
    run_trial_in_actor(cfg, data, str(restarted), resumed.append)
    assert [m["epoch"] for m in _numbers(resumed)] == list(range(1, epochs + 1))  # epoch 1 sent again, then on
    assert _numbers(resumed) == _numbers(whole)
