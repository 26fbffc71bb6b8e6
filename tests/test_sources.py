"""WebDataset tar shards and img2dataset Parquet as training sources: what the driver resolves
and counts, what the readers yield (and skip), and the errors before Ray."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import yaml
from image_text_sources import corpus_samples, truncate, write_img2dataset_parquet, write_tars

from clipsweep.orchestrator.cli import main
from clipsweep.orchestrator.trial_data import data_from_doc
from clipsweep.trainers.data.epochs import full_batches
from clipsweep.trainers.data.loading import Preprocess
from clipsweep.trainers.data.shards import DataFormatError
from clipsweep.trainers.data.sources import (
    _read_tars,
    _tar_samples,
    check_skipped,
    resolve_source,
    source_captions,
    source_size,
)


@pytest.fixture(scope="module")
def samples(small_corpus):
    return corpus_samples(small_corpus)[:120]


def _data(small_corpus, train, **extra):
    return {"train": train, "tokenizer": small_corpus.tokenizer_dir, **extra}


def test_brace_patterns_lists_and_folders_resolve_to_the_same_tar_shards(samples, tmp_path):
    paths = write_tars(samples, str(tmp_path / "wds"), shards=4)
    pattern = str(tmp_path / "wds" / "{00000..00003}.tar")
    assert resolve_source(pattern).files == tuple(paths)
    assert resolve_source(paths).files == tuple(paths)
    assert resolve_source(str(tmp_path / "wds")).files == tuple(paths)
    assert resolve_source(pattern).kind == "webdataset"
    size = source_size(resolve_source(pattern))  # scanned: no stats file
    assert size.samples == 120 and size.n_classes == max(s["label"] for s in samples) + 1
    with open(tmp_path / "wds" / "00000_stats.json", "w") as f:
        json.dump({"successes": 1000, "count": 1100}, f)  # img2dataset's count wins over a scan
    assert source_size(resolve_source(pattern)).samples == 1000 + 90


def test_img2dataset_parquet_is_recognised_by_its_columns(samples, tmp_path, small_corpus):
    write_img2dataset_parquet(samples, str(tmp_path / "i2d"), shards=2)
    source = resolve_source(str(tmp_path / "i2d"))
    assert source.kind == "img2dataset" and len(source.files) == 2
    assert source_size(source).samples == 120
    assert resolve_source(small_corpus.split_dir("train")).kind == "shards"  # clipsweep's own
    assert list(source_captions(source))[:3] == [s["caption"] for s in samples[:3]]


def test_the_tar_reader_skips_and_names_each_broken_sample(samples, tmp_path):
    faults = {3: "no_caption", 10: "no_image", 20: "undecodable_image"}
    [first, second] = write_tars(samples[:60], str(tmp_path / "wds"), shards=2, faults=faults)
    truncate(second, 0.5)
    rows = _read_tars({"path": np.array([first, second])}, caption_field=None).to_pydict()
    skips = Counter(rows["skip"])
    assert skips["no_caption"] == 1 and skips["no_image"] == 1 and skips["truncated_shard"] == 1
    assert skips[""] + 3 == len(rows["id"]) and 30 + 10 <= len(rows["id"]) < 60  # the cut half is gone
    assert rows["id"][:3] == [s["key"] for s in samples[:3]] and rows["label"][0] == samples[0]["label"]
    decoded = Preprocess(_tokenizer(tmp_path, samples)).decode({k: np.asarray(v, dtype=object) for k, v in rows.items()})
    assert Counter(decoded["skip"])["undecodable_image"] == 1  # the .jpg that is not a JPEG
    assert not decoded["image"][20].any() and decoded["image"][0].any()
    os.chmod(first, 0)
    try:
        if os.access(first, os.R_OK):  # root reads it anyway: an empty file stands in
            open(first, "wb").close()
        assert [problem for _, _, problem in _tar_samples(first)] in (["unreadable_shard"], [])
    finally:
        os.chmod(first, 0o644)


def _tokenizer(tmp_path, samples) -> str:
    from clipsweep.trainers.data.tokenizer import build_tokenizer

    build_tokenizer([s["caption"] for s in samples], str(tmp_path / "tok"), vocab_size=200)
    return str(tmp_path / "tok")


def test_streamed_batches_stay_full_and_count_what_they_drop():
    batches = [
        {"id": np.array(list("abcd")), "skip": np.array(["", "no_image", "", ""], dtype=object)},
        {"id": np.array(list("efgh")), "skip": np.array(["", "", "no_caption", ""], dtype=object)},
    ]
    counts: Counter[str] = Counter()
    out = list(full_batches(batches, 3, counts))
    assert [list(b["id"]) for b in out] == [["a", "c", "d"], ["e", "f", "h"]]
    assert counts == Counter({"read": 8, "no_image": 1, "no_caption": 1})


def test_more_skipped_than_allowed_fails_with_the_counts():
    check_skipped({"read": 1000, "no_caption": 10}, 0.01, "epoch 1")  # 1.0% is allowed
    with pytest.raises(DataFormatError, match=r"epoch 2: 11 of 1000 samples skipped \(1.1%: no caption 10, truncated shard 1\); "
                       r"allowed: at most data.max_skipped_fraction=0.01"):  # fmt: skip
        check_skipped({"read": 1000, "no_caption": 10, "truncated_shard": 1}, 0.01, "epoch 2")


def test_bad_sources_are_refused_before_ray_naming_the_field(samples, tmp_path, small_corpus, capsys):
    write_tars(samples[:20], str(tmp_path / "wds"), shards=2)
    with pytest.raises(DataFormatError, match=r"data.train='.*/\{00000..00009\}.tar' .*00002.tar: no such tar shard \(8 of the 10"):
        data_from_doc(_data(small_corpus, str(tmp_path / "wds" / "{00000..00009}.tar")))
    with pytest.raises(DataFormatError, match=r"data.train='nosuchfs://bucket/x.tar' .*no filesystem for nosuchfs:// is installed"):
        data_from_doc(_data(small_corpus, "nosuchfs://bucket/x.tar"))
    with pytest.raises(ValueError, match=r"data.max_skipped_fraction=1.5; allowed: a number in \[0, 1\)"):
        data_from_doc(_data(small_corpus, str(tmp_path / "wds"), max_skipped_fraction=1.5))
    write_tars(samples[:20], str(tmp_path / "nocap"), shards=1, caption_in_json=True)  # no .txt members
    with pytest.raises(DataFormatError, match=r"00000.tar: 20 of 20 samples lack an image or a caption, e.g. '000000000' "
                       r"\(has cls, jpg, json\); .* and 000000000.txt"):  # fmt: skip
        data_from_doc(_data(small_corpus, str(tmp_path / "nocap")))
    data = data_from_doc(_data(small_corpus, str(tmp_path / "nocap"), caption_field="caption"))  # the .json's field
    assert data.n_train == 20 and data.caption_field == "caption"
    spec = tmp_path / "trial.yaml"
    spec.write_text(yaml.safe_dump({"data": _data(small_corpus, str(tmp_path / "none" / "{0..3}.tar"))}))
    assert main(["train", str(spec)]) == 2
    assert "error: data.train=" in capsys.readouterr().err


def test_the_tokenizer_command_reads_tar_shards(samples, tmp_path):
    write_tars(samples, str(tmp_path / "wds"), shards=2)
    assert main(["data", "tokenizer", str(tmp_path / "wds" / "{00000..00001}.tar"), "--out", str(tmp_path / "tok")]) == 0
    vocab = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["model"]["vocab"]
    assert {"[CLS]", "[SEP]"} <= set(vocab) and len(vocab) > 20


def test_the_sweep_summary_says_how_many_samples_were_skipped():
    import pandas as pd

    from clipsweep.orchestrator.sweep_cli import skipped_samples_note

    clean = pd.DataFrame({"name": ["trial-00"], "data/read": [540.0], "data/skipped": [0.0]})
    assert skipped_samples_note(clean) is None
    assert skipped_samples_note(pd.DataFrame({"name": ["trial-00"]})) is None  # clipsweep shards of old runs
    trials = pd.DataFrame({
        "name": ["trial-00", "trial-01"], "data/read": [540.0, 540.0], "data/skipped": [1.0, 3.0],
        "data/skipped/no_caption": [1.0, 1.0], "data/skipped/undecodable_image": [float("nan"), 2.0],
    })  # fmt: skip
    assert skipped_samples_note(trials) == (
        "skipped samples: up to 3 of 540 an epoch (trial-01: no caption 1, undecodable image 2); "
        "each trial's counts are its data/skipped/... metrics"
    )
