"""Ray Data loading on a real local Ray: shapes, dtypes, captions, and each rank's own stream."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from clipsweep.trainers.data.loading import (
    Preprocess,
    build_dataset,
    build_train_dataset,
    rank_files,
    rank_stream,
    read_shards,
    torch_batches,
)
from clipsweep.trainers.data.shards import DataFormatError
from clipsweep.trainers.data.sources import resolve_source
from clipsweep.trainers.data.tokenizer import load_tokenizer
from clipsweep.trainers.data.transforms import jitter_colours, random_crop_boxes, random_resized_crops

pytestmark = pytest.mark.usefixtures("ray_local")


def _train_rows(corpus) -> dict[str, dict]:
    return {r["id"]: r for r in pq.read_table(corpus.split_dir("train")).to_pylist()}


def _roundtrip(tokenizer, caption: str) -> str:
    """The caption as decoding its tokens gives it back (lower case, no space before commas)."""
    return tokenizer.decode(tokenizer(caption)["input_ids"], skip_special_tokens=True)


def test_batches_have_model_shapes_and_dtypes(small_corpus):
    rows = _train_rows(small_corpus)
    dataset = build_dataset(small_corpus.split_dir("train"), Preprocess(small_corpus.tokenizer_dir, image_size=48))
    seen = []
    for batch in torch_batches(dataset, batch_size=64):
        n = len(batch["id"])
        assert batch["image"].shape == (n, 3, 48, 48) and batch["image"].dtype == torch.float32
        assert batch["input_ids"].shape == batch["attention_mask"].shape == (n, 32)
        assert batch["input_ids"].dtype == batch["label"].dtype == torch.int64
        assert torch.equal(batch["label"], torch.tensor([rows[i]["label"] for i in batch["id"]]))
        assert -2.0 < batch["image"].min() < batch["image"].max() < 2.7  # CLIP-normalised pixels
        seen += batch["id"]
    assert sorted(seen) == sorted(rows)


def test_eval_mode_is_deterministic_and_uses_first_caption(small_corpus):
    rows = _train_rows(small_corpus)
    tokenizer = load_tokenizer(small_corpus.tokenizer_dir)
    preprocess = Preprocess(small_corpus.tokenizer_dir, train=False)
    passes = [
        list(torch_batches(build_dataset(small_corpus.shards["train"][0], preprocess), batch_size=32)) for _ in range(2)
    ]
    images = [{i: image for b in batches for i, image in zip(b["id"], b["image"])} for batches in passes]
    assert len(images[0]) == 128 and images[0].keys() == images[1].keys()  # order may differ, content not
    assert all(torch.equal(images[0][i], images[1][i]) for i in images[0])
    for batch in passes[0]:
        for i, ids in zip(batch["id"], batch["input_ids"]):
            assert tokenizer.decode(ids, skip_special_tokens=True) == _roundtrip(tokenizer, rows[i]["caption"])


def test_train_mode_draws_among_all_captions(small_corpus):
    rows = _train_rows(small_corpus)
    tokenizer = load_tokenizer(small_corpus.tokenizer_dir)
    dataset = build_dataset(small_corpus.shards["train"][0], Preprocess(small_corpus.tokenizer_dir, train=True))
    drawn = [
        (i, tokenizer.decode(ids, skip_special_tokens=True))
        for batch in torch_batches(dataset, batch_size=128)
        for i, ids in zip(batch["id"], batch["input_ids"])
    ]
    options = {i: [_roundtrip(tokenizer, c) for c in rows[i]["captions"]] for i, _ in drawn}
    assert all(caption in options[i] for i, caption in drawn)
    assert sum(caption != options[i][0] for i, caption in drawn) > len(drawn) // 2  # 4 of 5 are not the first


def test_each_rank_streams_its_own_files_every_id_once_in_the_same_order(small_corpus):
    """A streamed set at W=2: rank r reads every second shard file from position r, so the ranks
    see disjoint ids that together are the set, in the same order every pass."""
    rows = _train_rows(small_corpus)
    source = resolve_source(small_corpus.split_dir("train"))
    assert rank_files(source.files, 1, 2) == list(source.files[1::2])
    seen = []
    for rank in range(2):
        stream = rank_stream(source, Preprocess(small_corpus.tokenizer_dir), rank, 2)
        passes = [[i for b in stream.iter_batches(batch_size=50, batch_format="numpy") for i in b["id"]] for _ in range(2)]
        assert passes[0] == passes[1] and passes[0]
        seen.append(passes[0])
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == sorted(rows)


def test_bad_paths_fail_before_any_ray_task(tmp_path):
    with pytest.raises(DataFormatError, match="no such shard file or directory"):
        read_shards([str(tmp_path / "missing.parquet")])


def test_views_give_another_caption_and_a_second_image(small_corpus):
    rows = _train_rows(small_corpus)
    tokenizer = load_tokenizer(small_corpus.tokenizer_dir)
    dataset = build_dataset(small_corpus.shards["train"][0], Preprocess(small_corpus.tokenizer_dir, views=True))
    batch = next(torch_batches(dataset, batch_size=64))
    assert batch["image_view"].shape == batch["image"].shape and batch["image_view"].dtype == torch.float32
    assert not torch.equal(batch["image_view"], batch["image"])
    for i, ids, view_ids in zip(batch["id"], batch["input_ids"], batch["view_input_ids"]):
        first, second = (tokenizer.decode(x, skip_special_tokens=True) for x in (ids, view_ids))
        options = [_roundtrip(tokenizer, c) for c in rows[i]["captions"]]
        assert first in options and second in options and first != second  # 5 distinct captions each


def test_single_caption_items_get_a_token_dropped_view(tmp_path, small_corpus):
    import numpy as np

    preprocess = Preprocess(small_corpus.tokenizer_dir, views=True, token_drop=0.5)
    table = pq.read_table(small_corpus.shards["train"][0]).slice(0, 64)
    batch = {c: table.column(c).to_numpy(zero_copy_only=False) for c in ("id", "image", "caption")}
    out = preprocess(batch)
    lengths, view_lengths = out["attention_mask"].sum(1), out["view_attention_mask"].sum(1)
    assert (view_lengths <= lengths).all() and (view_lengths < lengths).mean() > 0.9
    assert np.array_equal(out["view_input_ids"][:, 0], out["input_ids"][:, 0])  # [CLS] kept


def test_random_crop_boxes_stay_inside_and_follow_the_area_range():
    rng = np.random.default_rng(0)
    for width, height in ((64, 64), (120, 40), (7, 300)):
        boxes = random_crop_boxes(2000, width, height, (0.5, 1.0), rng)
        left, top, right, bottom = boxes.T
        assert (0 <= left).all() and (left < right).all() and (right <= width).all()
        assert (0 <= top).all() and (top < bottom).all() and (bottom <= height).all()
        w, h = right - left, bottom - top
        # A fallback centre crop is square; a sampled one keeps area and aspect in range.
        fallback = (w == h) & (w == min(width, height))
        sampled = (0.45 <= w * h / (width * height)) & (w * h / (width * height) <= 1.05) & (0.7 <= w / h) & (w / h <= 1.4)
        assert (fallback | sampled).all()
    seeded = [random_crop_boxes(4, 64, 64, (0.8, 1.0), np.random.default_rng(5)) for _ in range(2)]
    assert np.array_equal(seeded[0], seeded[1])


def test_resized_crops_of_the_whole_image_are_the_image_and_flips_mirror_it():
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    whole = random_resized_crops(images, 16, np.random.default_rng(0), scale=(1.0, 1.0))
    assert torch.equal(whole, images)
    flipped = random_resized_crops(images, 16, np.random.default_rng(0), scale=(1.0, 1.0), hflip=True)
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)]
    assert all(m or torch.equal(f, i) for m, f, i in zip(mirrored, flipped, images)) and 0 < sum(mirrored) < 6
    half = random_resized_crops(images, 8, np.random.default_rng(1), scale=(0.25, 0.25))
    assert half.shape == (6, 3, 8, 8) and half.dtype == torch.uint8


def test_colour_jitter_is_per_image_and_identity_at_zero_strength():
    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(jitter_colours(images, np.random.default_rng(0), strength=0.0), images)
    jittered = jitter_colours(images, np.random.default_rng(0)).float()
    ratios = jittered.mean(dim=(1, 2, 3)) / images.float().mean(dim=(1, 2, 3))
    assert ratios.std() > 0.05  # each image drew its own factors


def test_small_training_sets_are_decoded_once_and_augmented_by_the_consumer(small_corpus):
    rows = _train_rows(small_corpus)
    preprocess = Preprocess(small_corpus.tokenizer_dir, image_size=48, views=True)
    dataset, decoded = build_train_dataset(small_corpus.split_dir("train"), preprocess)
    assert decoded and set(dataset.schema().names) == {"id", "image", "caption_tokens", "label", "skip"}
    epochs = [list(torch_batches(dataset, batch_size=64, augment=preprocess)) for _ in range(2)]
    for batches in epochs:
        assert sorted(i for b in batches for i in b["id"]) == sorted(rows)
        batch = batches[0]
        assert batch["image"].shape == batch["image_view"].shape == (len(batch["id"]), 3, 48, 48)
        assert batch["input_ids"].shape == batch["view_input_ids"].shape == (len(batch["id"]), 32)
    # The cached pixels are the same each epoch; the crops drawn from them are not.
    first = [{i: im for b in batches for i, im in zip(b["id"], b["image"])} for batches in epochs]
    assert sum(not torch.equal(first[0][i], first[1][i]) for i in rows) > len(rows) // 2


def test_the_shared_decoded_set_is_keyed_by_everything_that_changes_its_content(small_corpus, tmp_path):
    import shutil

    from clipsweep.orchestrator.trial_data import decode_key
    from clipsweep.trainers.data.shards import resolve_shards
    from clipsweep.trainers.data.sources import resolve_source

    train, tokenizer = str(tmp_path / "train"), str(tmp_path / "tokenizer")
    shutil.copytree(small_corpus.split_dir("train"), train)
    shutil.copytree(small_corpus.tokenizer_dir, tokenizer)
    source = resolve_source(train)
    preprocess = Preprocess(tokenizer, image_size=32, max_length=16)
    key = decode_key(source, preprocess)
    assert decode_key(source, Preprocess(tokenizer, image_size=32, max_length=16, views=True, token_drop=0.3)) == key  # drawn later
    assert decode_key(source, Preprocess(tokenizer, image_size=48, max_length=16)) != key
    assert decode_key(source, Preprocess(tokenizer, image_size=32, max_length=24)) != key
    assert decode_key(source, Preprocess(small_corpus.tokenizer_dir, image_size=32, max_length=16)) != key
    os.utime(resolve_shards(train)[0], ns=(0, 0))  # the same path rewritten: another version
    assert decode_key(source, preprocess) != key
    key = decode_key(source, preprocess)
    with open(os.path.join(tokenizer, "tokenizer.json"), "a") as f:
        f.write(" ")  # a retrained tokenizer in the same folder
    assert decode_key(source, preprocess) != key
