"""The synthetic corpus: determinism, splits, hard negatives, and images that match captions."""

from __future__ import annotations

import filecmp
import io
import itertools
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy import ndimage

from clipsweep.orchestrator.cli import main
from clipsweep.trainers.data.render import _RGB, render_scene
from clipsweep.trainers.data.scenes import ATTRIBUTES, Scene, canonical_caption
from clipsweep.trainers.data.shards import MANIFEST_NAME
from clipsweep.trainers.data.synthetic import generate_synthetic, is_heldout


def _rows(corpus_dir: str, split: str) -> list[dict]:
    table = pq.read_table(os.path.join(corpus_dir, split))
    return table.to_pylist()


def _files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_same_seed_gives_byte_identical_shards(tmp_path):
    outs = [str(tmp_path / name) for name in ("a", "b")]
    for out in outs:
        # 2,500 scenes in 512-row shards: several files per split, a quarter of the default's time
        assert main(["data", "synthetic", "--n", "2500", "--rows-per-shard", "512", "--out", out, "--seed", "0"]) == 0
    files = _files(outs[0])
    assert files == _files(outs[1])
    assert sum(f.endswith(".parquet") for f in files) >= 5
    match, mismatch, errors = filecmp.cmpfiles(outs[0], outs[1], files, shallow=False)
    assert mismatch == [] and errors == []
    rows = sum(pq.read_metadata(os.path.join(outs[0], f)).num_rows for f in files if f.endswith(".parquet"))
    assert rows == 2_500


def test_other_seed_gives_other_images(tmp_path):
    a = generate_synthetic(str(tmp_path / "a"), n=50, seed=0, tokenizer=False)
    b = generate_synthetic(str(tmp_path / "b"), n=50, seed=1, tokenizer=False)
    assert _rows(a.root, "train")[0]["image"] != _rows(b.root, "train")[0]["image"]


def test_splits_share_no_scene_and_ids_are_unique(small_corpus):
    train, heldout = _rows(small_corpus.root, "train"), _rows(small_corpus.root, "heldout")
    key = lambda r: tuple(r[a] for a in ATTRIBUTES)  # noqa: E731
    assert {key(r) for r in train}.isdisjoint({key(r) for r in heldout})
    ids = [r["id"] for r in train + heldout]
    assert len(ids) == len(set(ids)) == 600
    assert 0.04 < len(heldout) / 600 < 0.2  # heldout_fraction = 0.1 of attribute tuples
    assert all(is_heldout(Scene(**{a: r[a] for a in ATTRIBUTES}), 3, 0.1) for r in heldout)


def test_one_attribute_hard_negative_captions_exist(small_corpus):
    """Scenes differing in one attribute exist, and their captions differ in that attribute only."""
    rows = _rows(small_corpus.root, "train")
    for attribute in ATTRIBUTES:
        others = [a for a in ATTRIBUTES if a != attribute]
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(row[a] for a in others), []).append(row)
        pairs = [
            (x, y)
            for group in groups.values()
            for x, y in itertools.combinations(group, 2)
            if x[attribute] != y[attribute]
        ]
        assert pairs, f"no hard-negative pair differing only in {attribute}"
        for x, y in pairs:
            words_x, words_y = x["caption"].split(), y["caption"].split()
            changed = set(words_x) ^ set(words_y)
            if attribute == "position":  # "in the center" vs "on the left"
                changed -= {"in", "on", "at"}
            if attribute == "count":  # "a single circle" vs "two circles": number and plural change
                assert changed and changed <= {"a", "single", "two", "three"} | {w for w in changed if x["shape"] in w}
            else:  # the two values, as singular or plural nouns where the attribute is the shape
                forms = {x[attribute]: set(), y[attribute]: set()}
                for word in changed:
                    for value in forms:
                        if word in (value, value + "s", value + "es"):
                            forms[value].add(word)
                assert all(forms.values()) and set().union(*forms.values()) == changed, (x["caption"], y["caption"])


def test_captions_name_every_attribute(small_corpus):
    for row in _rows(small_corpus.root, "train")[:50]:
        assert row["caption"] == row["captions"][0] == canonical_caption(Scene(**{a: row[a] for a in ATTRIBUTES}))
        assert len(row["captions"]) == 5
        for caption in row["captions"][:3]:
            for attribute in ("shape", "colour", "size", "texture", "background"):
                assert row[attribute] in caption


@pytest.mark.parametrize("colour", ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink"])
@pytest.mark.parametrize("position", ["left", "right", "top", "bottom"])
def test_rendered_object_has_named_colour_and_position(colour, position):
    scene = Scene("square", colour, "medium", position, "one", "plain", "black")
    pixels = np.asarray(render_scene(scene, np.random.default_rng(0), 64)).astype(int)
    foreground = np.abs(pixels - np.asarray(_RGB["black"])).sum(-1) > 60
    mean = pixels[foreground].mean(0)
    nearest = min(ATTRIBUTES["colour"], key=lambda c: np.abs(mean - _RGB[c]).sum())
    assert nearest == colour
    ys, xs = np.nonzero(foreground)
    centre = {"left": xs.mean() < 28, "right": xs.mean() > 36, "top": ys.mean() < 28, "bottom": ys.mean() > 36}
    assert centre[position]


@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "diamond", "star", "cross"])
@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_counts_render_that_many_separate_objects(shape, size):
    for n, count in enumerate(["one", "two", "three"], start=1):
        for position in ("center", "left"):
            scene = Scene(shape, "red", size, position, count, "plain", "white")
            pixels = np.asarray(render_scene(scene, np.random.default_rng(n), 64)).astype(int)
            _, components = ndimage.label(np.abs(pixels - np.asarray(_RGB["white"])).sum(-1) > 60)
            assert components == n, scene


def test_images_are_png_at_requested_size(tmp_path):
    corpus = generate_synthetic(str(tmp_path), n=20, seed=0, image_size=96, tokenizer=False)
    image = Image.open(io.BytesIO(_rows(corpus.root, "train")[0]["image"]))
    assert (image.format, image.size, image.mode) == ("PNG", (96, 96), "RGB")


@pytest.mark.parametrize(
    "kwargs, field",
    [({"n": 1}, "n=1"), ({"image_size": 8}, "image_size=8"), ({"heldout_fraction": 1.5}, "heldout_fraction=1.5")],
)
def test_bad_generation_parameters_are_named(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        generate_synthetic(str(tmp_path), **kwargs)


def test_scene_rejects_unknown_value():
    with pytest.raises(ValueError, match=r"Scene.colour='mauve'; allowed: red, green"):
        Scene("circle", "mauve", "small", "left", "one", "plain", "black")


def test_the_corpus_cache_is_keyed_by_the_generator_version(tmp_path, monkeypatch):
    """A new scene attribute bumps CORPUS_VERSION; a corpus the old generator cached is then
    never reused for the same (n, seed, image size)."""
    from clipsweep.trainers.data import synthetic

    old = synthetic.ensure_synthetic(str(tmp_path), n=60, seed=0, image_size=32)
    assert synthetic.ensure_synthetic(str(tmp_path), n=60, seed=0, image_size=32).root == old.root  # cached
    monkeypatch.setattr(synthetic, "CORPUS_VERSION", synthetic.CORPUS_VERSION + 1)
    new = synthetic.ensure_synthetic(str(tmp_path), n=60, seed=0, image_size=32)
    assert new.root != old.root and os.path.isfile(os.path.join(new.root, MANIFEST_NAME))
