"""Converters on tiny fixtures in the real on-disk layouts, including broken images."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipsweep.orchestrator.cli import main
from clipsweep.trainers.data import converters
from clipsweep.trainers.data.shards import DataFormatError, read_manifest, resolve_shards


def _write_jpeg(path, seed: int, size=(40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return data


def _image_dir(root, names: list[str]) -> dict[str, bytes]:
    """Real JPEGs for all names but the last two: one truncated JPEG and one missing file."""
    os.makedirs(root, exist_ok=True)
    written = {name: _write_jpeg(os.path.join(root, name), i) for i, name in enumerate(names[:-2])}
    truncated = _write_jpeg(os.path.join(root, names[-2]), 99)
    with open(os.path.join(root, names[-2]), "wb") as f:
        f.write(truncated[: len(truncated) // 2])
    return written  # names[-1] is never written


def _rows(out_dir) -> list[dict]:
    return pq.read_table(resolve_shards(str(out_dir))).to_pylist()


NAMES = ["000000000139.jpg", "000000000285.jpg", "000000000632.jpg", "000000000724.jpg", "000000000776.jpg"]


@pytest.fixture
def coco(tmp_path):
    images = _image_dir(tmp_path / "val2017", NAMES)
    ids = [int(n.split(".")[0]) for n in NAMES]
    doc = {
        "info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
        "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "BY-NC-SA"}],
        "images": [
            {"license": 1, "file_name": n, "coco_url": "", "height": 30, "width": 40, "date_captured": "", "id": i}
            for n, i in zip(NAMES, ids)
        ],
        "annotations": [
            {"image_id": i, "id": 1000 * k + j, "caption": f"image {i} caption {j} "}
            for k, i in enumerate(ids)
            for j in range(5 if k else 7)  # the real files have a few images with 6 or 7 captions
        ],
    }
    path = tmp_path / "annotations" / "captions_val2017.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    return path, tmp_path / "val2017", images


def test_coco_writes_one_row_per_image_and_counts_broken_files(coco, tmp_path):
    captions, image_dir, images = coco
    summary = converters.write_items(converters.coco_items(str(captions), str(image_dir)), str(tmp_path / "out"), "coco")
    assert (summary.rows, summary.captions) == (3, 7 + 5 + 5)
    assert [os.path.basename(p) for p in summary.corrupt] == [NAMES[3]]
    assert [os.path.basename(p) for p in summary.missing] == [NAMES[4]]
    rows = _rows(tmp_path / "out")
    assert [r["id"] for r in rows] == ["coco-139", "coco-285", "coco-632"]
    assert rows[0]["image"] == images[NAMES[0]]  # stored as found, not re-encoded
    assert rows[0]["captions"] == [f"image 139 caption {j}" for j in range(7)]
    assert rows[1]["caption"] == rows[1]["captions"][0] == "image 285 caption 0"
    assert all(r["label"] is None for r in rows)
    manifest = read_manifest(str(tmp_path / "out"))
    assert manifest["rows"] == 3 and len(manifest["skipped"]["corrupt"]) == 1 and len(manifest["skipped"]["missing"]) == 1


def test_rows_per_shard_splits_output(coco, tmp_path):
    captions, image_dir, _ = coco
    summary = converters.write_items(
        converters.coco_items(str(captions), str(image_dir)), str(tmp_path / "out"), "coco", rows_per_shard=2
    )
    assert [pq.read_metadata(p).num_rows for p in summary.shards] == [2, 1]


def test_karpathy_flickr30k_keeps_asked_splits(tmp_path):
    names = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg", "1000344755.jpg", "1000366164.jpg"]
    _image_dir(tmp_path / "flickr30k-images", names)
    splits = ["test", "test", "train", "test", "test"]
    doc = {
        "dataset": "flickr30k",
        "images": [
            {
                "sentids": list(range(5 * i, 5 * i + 5)),
                "imgid": i,
                "sentences": [
                    {"tokens": ["a", "dog", str(j)], "raw": f"A dog {i}-{j}.", "imgid": i, "sentid": 5 * i + j}
                    for j in range(5)
                ],
                "split": split,
                "filename": name,
            }
            for i, (name, split) in enumerate(zip(names, splits))
        ],
    }
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    argv = ["data", "convert", "flickr30k", "--karpathy-json", str(tmp_path / "dataset_flickr30k.json")]
    assert main(argv + ["--images", str(tmp_path / "flickr30k-images"), "--split", "test", "--out", str(out)]) == 0
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["flickr30k-1000092795", "flickr30k-10002456"]
    assert rows[1]["captions"] == [f"A dog 1-{j}." for j in range(5)]
    assert read_manifest(str(out))["skipped"] == {
        "corrupt": [str(tmp_path / "flickr30k-images" / names[3])],
        "missing": [str(tmp_path / "flickr30k-images" / names[4])],
    }


def test_karpathy_coco_honours_filepath(tmp_path):
    _write_jpeg(tmp_path / "val2014_img.jpg", 0)
    (tmp_path / "val2014").mkdir()
    os.replace(tmp_path / "val2014_img.jpg", tmp_path / "val2014" / "COCO_val2014_000000391895.jpg")
    doc = {
        "dataset": "coco",
        "images": [
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000391895.jpg",
                "split": "test",
                "cocoid": 391895,
                "sentences": [{"raw": "A man riding a bike."}],
            }
        ],
    }
    (tmp_path / "dataset_coco.json").write_text(json.dumps(doc))
    items = converters.karpathy_items(str(tmp_path / "dataset_coco.json"), str(tmp_path))
    summary = converters.write_items(items, str(tmp_path / "out"), "flickr30k")
    assert summary.rows == 1 and not summary.missing


def test_folder_groups_captions_and_reads_labels(tmp_path):
    names = ["cat.png", "dog.jpg", "bird.jpg", "broken.jpg", "gone.jpg"]
    image_dir = tmp_path / "images"
    _image_dir(image_dir, names)
    Image.open(image_dir / "cat.png").save(image_dir / "cat.png", format="PNG")  # a real PNG too
    with open(image_dir / "captions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "caption", "label"])
        writer.writerows(
            [["cat.png", "a cat", 0], ["dog.jpg", "a dog", 1], ["cat.png", "a sleepy cat", 0], ["bird.jpg", "a bird", ""]]
            + [["broken.jpg", "x", 2], ["gone.jpg", "y", 3]]
        )
    out = tmp_path / "out"
    assert main(["data", "convert", "folder", "--images", str(image_dir), "--out", str(out)]) == 0
    rows = _rows(out)
    assert [(r["id"], r["captions"], r["label"]) for r in rows] == [
        ("cat", ["a cat", "a sleepy cat"], 0),
        ("dog", ["a dog"], 1),
        ("bird", ["a bird"], None),
    ]
    assert Image.open(io.BytesIO(rows[0]["image"])).format == "PNG"


def test_bad_coco_json_names_file_and_field(tmp_path):
    path = tmp_path / "captions_train2017.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}]}))
    with pytest.raises(DataFormatError, match=r"captions_train2017\.json: no 'annotations' list.*image_id, caption"):
        converters.coco_items(str(path), str(tmp_path))


def test_coco_annotation_for_unknown_image_is_named(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": [], "annotations": [{"image_id": 7, "caption": "x"}]}))
    with pytest.raises(DataFormatError, match=r"annotations\[0\]\.image_id=7 is not in 'images'"):
        converters.coco_items(str(path), str(tmp_path))


def test_csv_without_headers_names_the_missing_ones(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text("a.jpg,a cat\nb.jpg,a dog\n")
    with pytest.raises(DataFormatError, match=r"captions\.csv: header lacks 'file', 'caption'"):
        converters.folder_items(str(tmp_path), str(path))


def test_cli_reports_bad_input_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "captions.json"
    path.write_text("{}")
    out = tmp_path / "out"
    code = main(["data", "convert", "coco", "--captions", str(path), "--images", str(tmp_path), "--out", str(out)])
    assert code == 2
    assert f"error: {path}: no 'images' list at the top level" in capsys.readouterr().err
    assert not out.exists()


def test_missing_shard_path_is_named(tmp_path):
    with pytest.raises(DataFormatError, match=r"nowhere/train: no such shard file or directory"):
        resolve_shards(str(tmp_path / "nowhere" / "train"))


def test_empty_directory_is_named(tmp_path):
    with pytest.raises(DataFormatError, match=r"directory holds no \.parquet shard"):
        resolve_shards(str(tmp_path))


def test_parquet_without_required_column_is_named(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"id": ["a"], "image": [b"x"], "text": ["no caption column"]}), path)
    with pytest.raises(DataFormatError, match=r"part-00000\.parquet: missing column 'caption'.*has id, image, text"):
        resolve_shards(str(tmp_path))


def test_parquet_column_of_wrong_type_is_named(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"id": [1], "image": [b"x"], "caption": ["c"]}), path)
    with pytest.raises(DataFormatError, match=r"column 'id' has type int64; expected string"):
        resolve_shards(str(path))


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_convert_never_overwrites_shards_unless_told_and_then_replaces_them_all(coco, tmp_path, capsys):
    captions, image_dir, _ = coco
    out = tmp_path / "out"
    argv = ["data", "convert", "coco", "--captions", str(captions), "--images", str(image_dir), "--out", str(out)]
    # The user's own data: 3 shards of 1 row each, one more nested (a conversion writes only part-00000).
    assert main(argv + ["--rows-per-shard", "1"]) == 0
    assert len(resolve_shards(str(out))) == 3
    (out / "extra").mkdir()
    pq.write_table(pa.table({"id": ["x"], "image": [b"x"], "caption": ["x"]}), out / "extra" / "part-00000.parquet")
    before = _snapshot(out)
    capsys.readouterr()
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"out='{out}' already holds 5 entries (dataset.json, extra, part-00000.parquet, ...)" in err
    assert "nothing written" in err and "--overwrite" in err
    assert _snapshot(out) == before  # refused: not a byte changed
    assert main(argv + ["--overwrite"]) == 0
    shards = resolve_shards(str(out))
    assert [os.path.relpath(p, out) for p in shards] == ["part-00000.parquet"]  # the old shards, nested ones too, are gone
    manifest = read_manifest(str(out))
    assert sum(pq.read_metadata(p).num_rows for p in shards) == manifest["rows"] == 3
    assert manifest["shards"] == ["part-00000.parquet"]


def test_an_overwrite_that_fails_keeps_the_old_shards(coco, tmp_path, capsys):
    captions, image_dir, _ = coco
    out = tmp_path / "out"
    assert main(["data", "convert", "coco", "--captions", str(captions), "--images", str(image_dir), "--out", str(out)]) == 0
    before = _snapshot(out)
    wrong = ["data", "convert", "coco", "--captions", str(captions), "--images", str(tmp_path), "--out", str(out), "--overwrite"]
    assert main(wrong) == 2
    assert "no image of the 5 listed exists" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_an_unknown_split_names_the_splits_there(tmp_path, capsys):
    doc = {"images": [{"filename": f"{i}.jpg", "split": s, "sentences": [{"raw": "a dog"}]} for i, s in enumerate(["train", "val", "test"])]}
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(doc))
    argv = ["data", "convert", "flickr30k", "--karpathy-json", str(tmp_path / "dataset_flickr30k.json"), "--images", str(tmp_path)]
    assert main(argv + ["--split", "tset", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "split='tset'" in err and "has no such split; allowed: test, train, val" in err
    assert not (tmp_path / "out").exists()
