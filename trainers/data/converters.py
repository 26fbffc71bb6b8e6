"""Converters from real data set layouts to clipsweep shards (one row per image).

Layouts:
    coco       official captions JSON (`annotations/captions_*.json`) + its image directory
    flickr30k  Karpathy split JSON (`dataset_flickr30k.json`; `dataset_coco.json` works too, its
               `filepath` is honoured) + the image directory
    folder     an image directory + a CSV with header `file,caption` (optional `label`); several
               rows for one file give it several captions

Images are stored as found (no re-encoding) after a full decode; missing or corrupt files are
skipped and counted. Input whose structure is wrong, an output folder that already holds files
(without `overwrite`), or input of which no image can be read raises `DataFormatError` before
anything is written or removed.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .shards import MANIFEST_NAME, DataFormatError, ShardWriter, write_manifest
from .transforms import decode_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One image and its captions, before its file is read."""

    id: str
    path: str
    captions: list[str]
    label: int | None = None


@dataclass
class ConversionSummary:
    """What a conversion wrote and what it skipped."""

    source: str
    out_dir: str
    rows: int = 0
    captions: int = 0
    missing: list[str] = field(default_factory=list)  # image paths that do not exist
    corrupt: list[str] = field(default_factory=list)  # image paths that do not decode
    shards: list[str] = field(default_factory=list)


def _load_json(path: str) -> Any:
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: no such file")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: not valid JSON ({e})") from e


def _require_list(doc: Any, key: str, path: str, expected: str) -> list[Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise DataFormatError(f"{path}: no {key!r} list at the top level; expected {expected}")
    return doc[key]


def coco_items(captions_json: str, image_dir: str) -> list[Item]:
    """Items of a COCO captions file (`images` + `annotations`), ordered by image id."""
    expected = "COCO captions JSON with 'images' [{id, file_name}] and 'annotations' [{image_id, caption}]"
    doc = _load_json(captions_json)
    images = _require_list(doc, "images", captions_json, expected)
    annotations = _require_list(doc, "annotations", captions_json, expected)
    try:
        files = {int(image["id"]): image["file_name"] for image in images}
    except (KeyError, TypeError, ValueError) as e:
        raise DataFormatError(f"{captions_json}: an entry of 'images' lacks 'id' or 'file_name' ({e!r})") from e
    captions: dict[int, list[str]] = {}
    for i, annotation in enumerate(annotations):
        try:
            image_id, caption = int(annotation["image_id"]), str(annotation["caption"]).strip()
        except (KeyError, TypeError, ValueError) as e:
            raise DataFormatError(f"{captions_json}: annotations[{i}] lacks 'image_id' or 'caption' ({e!r})") from e
        if image_id not in files:
            raise DataFormatError(f"{captions_json}: annotations[{i}].image_id={image_id} is not in 'images'")
        captions.setdefault(image_id, []).append(caption)
    return [
        Item(f"coco-{image_id}", os.path.join(image_dir, files[image_id]), captions[image_id])
        for image_id in sorted(captions)
    ]


def karpathy_items(split_json: str, image_dir: str, splits: Sequence[str] | None = None) -> list[Item]:
    """Items of a Karpathy split file, keeping the `split`s asked for (all when None)."""
    expected = "Karpathy split JSON with 'images' [{filename, split, sentences: [{raw}]}]"
    doc = _load_json(split_json)
    images = _require_list(doc, "images", split_json, expected)
    dataset = str(doc.get("dataset", "karpathy"))
    if splits is not None:
        present = sorted({str(image.get("split")) for image in images if isinstance(image, dict)})
        if unknown := [s for s in splits if s not in present]:
            raise DataFormatError(f"split={unknown[0]!r}: {split_json} has no such split; allowed: {', '.join(present)}")
    items = []
    for i, image in enumerate(images):
        try:
            filename, split = image["filename"], image["split"]
            captions = [str(s["raw"]).strip() for s in image["sentences"]]
        except (KeyError, TypeError) as e:
            raise DataFormatError(
                f"{split_json}: images[{i}] lacks {e}; each image needs 'filename', 'split' and 'sentences' [{{raw}}]"
            ) from e
        if splits is not None and split not in splits:
            continue
        if not captions:
            raise DataFormatError(f"{split_json}: images[{i}] ({filename}) has no sentences")
        path = os.path.join(image_dir, image.get("filepath", ""), filename)
        items.append(Item(f"{dataset}-{os.path.splitext(filename)[0]}", path, captions))
    return items


def folder_items(image_dir: str, captions_csv: str) -> list[Item]:
    """Items of an image folder and a `file,caption[,label]` CSV, in order of first appearance."""
    if not os.path.isfile(captions_csv):
        raise DataFormatError(f"{captions_csv}: no such file")
    try:
        return _read_captions_csv(image_dir, captions_csv)
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"{captions_csv}: not UTF-8 text ({e.reason} at byte {e.start}); save the CSV as UTF-8"
        ) from None


def _read_captions_csv(image_dir: str, captions_csv: str) -> list[Item]:
    with open(captions_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [name for name in ("file", "caption") if name not in header]
        if missing:
            raise DataFormatError(
                f"{captions_csv}: header lacks {', '.join(repr(m) for m in missing)}; expected a header row "
                f"`file,caption` (optional `label`), found {header or 'no header'}"
            )
        grouped: dict[str, Item] = {}
        for line, row in enumerate(reader, start=2):
            name = row["file"]
            label = row.get("label")
            try:
                label_value = int(label) if label not in (None, "") else None
            except ValueError as e:
                raise DataFormatError(f"{captions_csv}:{line}: label={label!r} is not an integer") from e
            item = grouped.setdefault(name, Item(os.path.splitext(name)[0], os.path.join(image_dir, name), [], label_value))
            item.captions.append(row["caption"].strip())
    return list(grouped.values())


def write_items(
    items: Sequence[Item],
    out_dir: str,
    source: str,
    rows_per_shard: int = 4096,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> ConversionSummary:
    """Reads and checks each item's image, writes the good ones as shards, counts the rest.

    Args:
        overwrite: replace the shards and manifest `out_dir` already holds (else it must be
            empty or new: a partial overwrite would mix old shards with the new manifest).

    Raises:
        DataFormatError: `out_dir` holds files and `overwrite` is false; no listed image
            exists; or every image is corrupt (nothing is left written then).
    """
    _check_output(out_dir, overwrite)
    if not any(os.path.isfile(item.path) for item in items):
        first = items[0].path if items else "(the input lists no image)"
        raise DataFormatError(f"no image of the {len(items)} listed exists (first expected: {first}); nothing written")
    if overwrite:
        _remove_shards(out_dir)
    summary = ConversionSummary(source, out_dir)
    writer = ShardWriter(out_dir, rows_per_shard)
    for item in items:
        if progress is not None:
            progress(1)
        if not os.path.isfile(item.path):
            summary.missing.append(item.path)
            continue
        with open(item.path, "rb") as f:
            data = f.read()
        try:
            decode_image(data)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            logger.warning("skipping corrupt image %s: %s", item.path, e)
            summary.corrupt.append(item.path)
            continue
        writer.write(
            {"id": item.id, "image": data, "caption": item.captions[0], "captions": item.captions, "label": item.label}
        )
        summary.captions += len(item.captions)
    summary.shards = writer.close()
    summary.rows = writer.rows_written
    if summary.rows == 0:
        _remove_shards(out_dir)
        raise DataFormatError(f"all {len(summary.corrupt)} images that exist are corrupt (first: {summary.corrupt[0]}); nothing written")
    write_manifest(
        out_dir,
        {
            "source": source,
            "rows": summary.rows,
            "captions": summary.captions,
            "skipped": {"missing": summary.missing, "corrupt": summary.corrupt},
            "shards": [os.path.relpath(p, out_dir) for p in summary.shards],
        },
    )
    return summary


def _check_output(out_dir: str, overwrite: bool) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataFormatError(f"out={out_dir!r} is a file; allowed: a new or empty folder")
    held = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    if held and not overwrite:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise DataFormatError(
            f"out={out_dir!r} already holds {len(held)} entries ({shown}); nothing written; allowed: a new or empty "
            "folder, or --overwrite to replace the shards there"
        )


def _remove_shards(out_dir: str) -> None:
    """Removes every shard (the loader reads `*.parquet` at any depth) and the manifest."""
    for path in glob.glob(os.path.join(out_dir, "**", "*.parquet"), recursive=True) + [os.path.join(out_dir, MANIFEST_NAME)]:
        if os.path.isfile(path):
            os.remove(path)
