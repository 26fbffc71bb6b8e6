"""`clipsweep train` from WebDataset tar shards and img2dataset Parquet, W=1 and W=2, held in
memory and streamed: broken samples are skipped and counted every epoch, too many fail the trial."""

from __future__ import annotations

import pytest
import torch
import yaml
from image_text_sources import corpus_samples, truncate, write_img2dataset_parquet, write_tars
from run_metrics import checkpoint_metrics

from clipsweep.orchestrator.cli import main
from clipsweep.orchestrator.trial import run_trial_in_actor
from clipsweep.orchestrator.trial_data import data_from_doc
from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.shards import DataFormatError

pytestmark = pytest.mark.usefixtures("ray_local")
BROKEN = {200: "no_caption", 300: "no_image", 400: "undecodable_image"}  # 3 of ~540 scenes, none in the first shard


@pytest.fixture(scope="module")
def samples(small_corpus):
    return corpus_samples(small_corpus)


def _train(tmp_path, small_corpus, train, workers: int, name: str, **data) -> int:
    config = tmp_path / f"{name}.yaml"
    doc = {
        "trial": {"optim": {"batch_size": 64, "warmup_steps": 1, "lr": 2e-3}},
        "data": {"train": train, "tokenizer": small_corpus.tokenizer_dir, **data},  # no held-out split: no benchmark
    }
    config.write_text(yaml.safe_dump(doc))
    return main(["train", str(config), "--workers", str(workers), "--epochs", "2", "--storage", str(tmp_path), "--name", name])


def _skipped(tmp_path, name: str) -> list[dict]:
    return [{k: v for k, v in m.items() if k.startswith("data/")} for m in checkpoint_metrics(str(tmp_path / name))]


def test_tar_shards_train_in_memory_on_two_workers_and_streamed_on_one(samples, small_corpus, tmp_path, capsys):
    pattern = str(tmp_path / "wds" / "{00000..00003}.tar")
    write_tars(samples, str(tmp_path / "wds"), shards=4, faults=BROKEN)
    assert _train(tmp_path, small_corpus, pattern, 2, "wds-w2") == 0
    counts = {"data/read": len(samples), "data/skipped": 3, "data/skipped/no_caption": 1, "data/skipped/no_image": 1,
              "data/skipped/undecodable_image": 1}  # fmt: skip
    assert _skipped(tmp_path, "wds-w2") == [counts, counts]
    assert f"skipped 3 of {len(samples)}" in capsys.readouterr().out

    truncate(str(tmp_path / "wds" / "00003.tar"), 0.5)  # an interrupted copy: the rest of the shard is gone
    assert _train(tmp_path, small_corpus, pattern, 1, "wds-w1", stream=True) == 0
    epochs = _skipped(tmp_path, "wds-w1")
    assert epochs[0] == epochs[1] and epochs[0]["data/skipped"] == 4 and epochs[0]["data/skipped/truncated_shard"] == 1
    assert len(samples) - 80 < epochs[0]["data/read"] < len(samples) - 40  # what a cut tar lost is not known


def test_img2dataset_parquet_trains_in_memory_on_one_worker(samples, small_corpus, tmp_path):
    """(Streamed on two workers: tests/test_reproducibility.py, which trains it twice and resumes it.)"""
    folder = str(tmp_path / "i2d")
    write_img2dataset_parquet(samples, folder, shards=4, faults={40: "no_caption", 200: "no_image"})
    assert _train(tmp_path, small_corpus, folder, 1, "i2d-w1") == 0
    counts = {"data/read": len(samples), "data/skipped": 2, "data/skipped/no_caption": 1, "data/skipped/no_image": 1}
    assert _skipped(tmp_path, "i2d-w1") == [counts, counts]


def test_more_skipped_samples_than_allowed_fail_the_trial_with_the_counts(samples, small_corpus, tmp_path):
    """The same check for both paths; here streamed, in a sweep's one-worker trial actor."""
    write_tars(samples, str(tmp_path / "wds"), shards=4, faults=BROKEN)
    truncate(str(tmp_path / "wds" / "00003.tar"), 0.5)
    data = data_from_doc({"train": str(tmp_path / "wds"), "tokenizer": small_corpus.tokenizer_dir, "stream": True,
                          "max_skipped_fraction": 0.005})  # fmt: skip
    cfg = TrialConfig.from_dict({"optim": {"epochs": 1, "batch_size": 64, "warmup_steps": 1}})
    threads = torch.get_num_threads()
    try:
        with pytest.raises(DataFormatError, match=r"epoch 1: 4 of \d+ samples skipped \(0.8%: no image 1, no caption 1, "
                           r"undecodable image 1, truncated shard 1\); allowed: at most data.max_skipped_fraction=0.005"):  # fmt: skip
            run_trial_in_actor(cfg, data, str(tmp_path / "strict"), lambda report: None)
    finally:
        torch.set_num_threads(threads)
