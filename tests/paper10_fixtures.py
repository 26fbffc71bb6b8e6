"""Tiny copies of the 10 paper10 test splits, written in each dataset's real on-disk format.

`write_paper10(root)` makes one directory per dataset under `root` and returns, per dataset, its
root and what a correct loader must read back: labels in paper10.yaml's class order, or the
captions of each test image.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field

import h5py
import numpy as np
import scipy.io
from PIL import Image

from clipsweep.trainers.evaluation.datasets import prompts


@dataclass
class Fixture:
    root: str
    labels: list[int] = field(default_factory=list)  # classification: canonical class per test item
    captions: list[list[str]] = field(default_factory=list)  # retrieval: captions per test image


def _jpeg(path: str, rng: np.random.Generator, size: tuple[int, int] = (40, 32)) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")


def _raw(name: str) -> list[str]:
    """The class names as the dataset's own files spell them ("_" for spaces)."""
    return [c.replace(" ", "_") for c in prompts()[name]["classes"]]


def _cifar(root: str, rng: np.random.Generator, hundred: bool) -> Fixture:
    folder = os.path.join(root, "cifar-100-python" if hundred else "cifar-10-batches-py")
    os.makedirs(folder)
    labels = [3, 0, 9, 3, 7, 1] if not hundred else [99, 1, 42, 1, 63, 0]
    data = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
    test = {"data": data, "filenames": [f"img_{i}.png" for i in range(len(labels))]}
    if hundred:
        test |= {"fine_labels": labels, "coarse_labels": [0] * len(labels)}
        meta, names = ("meta", {"fine_label_names": _raw("cifar100"), "coarse_label_names": ["x"] * 20}), ("test",)
    else:
        test |= {"labels": labels, "batch_label": "testing batch 1 of 1"}
        meta, names = ("batches.meta", {"label_names": _raw("cifar10"), "num_cases_per_batch": 10000}), ("test_batch",)
    with open(os.path.join(folder, names[0]), "wb") as f:
        pickle.dump(test, f, protocol=2)
    with open(os.path.join(folder, meta[0]), "wb") as f:
        pickle.dump(meta[1], f, protocol=2)
    return Fixture(root, labels)


def _food101(root: str, rng: np.random.Generator) -> Fixture:
    base = os.path.join(root, "food-101")
    # Three of the 101 classes, listed out of order: the loader must still use the full class list.
    chosen = {"waffles": ["101", "102"], "apple_pie": ["201"], "cheese_plate": ["301", "302"]}
    test = {c: [f"{c}/{i}" for i in ids] for c, ids in chosen.items()}
    for rel in (r for rels in test.values() for r in rels):
        _jpeg(os.path.join(base, "images", f"{rel}.jpg"), rng)
    os.makedirs(os.path.join(base, "meta"))
    with open(os.path.join(base, "meta", "test.json"), "w") as f:
        json.dump(test, f)
    with open(os.path.join(base, "meta", "classes.txt"), "w") as f:
        f.write("\n".join(_raw("food101")) + "\n")
    classes = _raw("food101")
    # torchvision reads its test.json class by class, in the file's key order.
    return Fixture(root, [classes.index(c) for c, ids in chosen.items() for _ in ids])


def _fgvc(root: str, rng: np.random.Generator) -> Fixture:
    data = os.path.join(root, "fgvc-aircraft-2013b", "data")
    variants = list(prompts()["fgvc_aircraft"]["classes"])
    items = [("0034309", "A320"), ("1514522", "Boeing 717"), ("0056978", "F/A-18"), ("0034310", "A320"), ("2041824", "Yak-42")]
    for image_id, _ in items:
        _jpeg(os.path.join(data, "images", f"{image_id}.jpg"), rng)
    with open(os.path.join(data, "variants.txt"), "w") as f:
        f.write("\n".join(variants) + "\n")
    with open(os.path.join(data, "images_variant_test.txt"), "w") as f:
        f.write("".join(f"{i} {v}\n" for i, v in items))
    return Fixture(root, [variants.index(v) for _, v in items])


def _pcam(root: str, rng: np.random.Generator) -> Fixture:
    base = os.path.join(root, "pcam")
    os.makedirs(base)
    labels = [0, 1, 1, 0, 1, 0]
    with h5py.File(os.path.join(base, "camelyonpatch_level_2_split_test_x.h5"), "w") as f:
        f.create_dataset("x", data=rng.integers(0, 256, (len(labels), 96, 96, 3), dtype=np.uint8))
    with h5py.File(os.path.join(base, "camelyonpatch_level_2_split_test_y.h5"), "w") as f:
        f.create_dataset("y", data=np.asarray(labels, dtype=np.uint8).reshape(-1, 1, 1, 1))
    return Fixture(root, labels)


def _pets(root: str, rng: np.random.Generator) -> Fixture:
    base = os.path.join(root, "oxford-iiit-pet")
    # (image id, class id 1-37, species 1 cat / 2 dog, breed id within species), as annotations/*.txt.
    items = [("Abyssinian_12", 1, 1, 1), ("beagle_40", 5, 2, 3), ("yorkshire_terrier_7", 37, 2, 25), ("Abyssinian_13", 1, 1, 1)]
    for image_id, *_ in items:
        _jpeg(os.path.join(base, "images", f"{image_id}.jpg"), rng)
    os.makedirs(os.path.join(base, "annotations"))
    with open(os.path.join(base, "annotations", "test.txt"), "w") as f:
        f.write("".join(f"{i} {c} {s} {b}\n" for i, c, s, b in items))
    return Fixture(root, [c - 1 for _, c, _, _ in items])


def _flowers102(root: str, rng: np.random.Generator) -> Fixture:
    base = os.path.join(root, "flowers-102")
    labels_1based = np.array([77, 1, 102, 77, 50, 3, 3])  # image_00001 .. image_00007
    for i in range(1, len(labels_1based) + 1):
        _jpeg(os.path.join(base, "jpg", f"image_{i:05d}.jpg"), rng)
    scipy.io.savemat(os.path.join(base, "imagelabels.mat"), {"labels": labels_1based[None, :].astype(np.uint8)})
    test_ids = np.array([[2, 3, 5, 7]])
    scipy.io.savemat(os.path.join(base, "setid.mat"), {"trnid": np.array([[1, 4]]), "valid": np.array([[6]]), "tstid": test_ids})
    return Fixture(root, [int(labels_1based[i - 1]) - 1 for i in test_ids[0]])


def _dtd(root: str, rng: np.random.Generator) -> Fixture:
    data = os.path.join(root, "dtd", "dtd")
    files = ["zigzagged/zigzagged_0001.jpg", "banded/banded_0002.jpg", "polka-dotted/polka-dotted_0100.jpg", "banded/banded_0009.jpg"]
    for rel in files:
        _jpeg(os.path.join(data, "images", rel), rng)
    os.makedirs(os.path.join(data, "labels"))
    with open(os.path.join(data, "labels", "test1.txt"), "w") as f:
        f.write("\n".join(files) + "\n")
    classes = _raw("dtd")
    return Fixture(root, [classes.index(rel.split("/")[0]) for rel in files])


def _karpathy(root: str, rng: np.random.Generator, coco: bool) -> Fixture:
    images, captions = [], []
    for i in range(12):  # 11 test images: R@10 needs at least 10
        filename = f"COCO_val2014_{i:012d}.jpg" if coco else f"{1000 + i}.jpg"
        split = "test" if i != 2 else ("restval" if coco else "train")  # one image outside the test split
        sentences = [f"image {i} caption {j}" for j in range(6 if coco and i == 0 else 5)]  # COCO: some have 6
        entry = {"filename": filename, "split": split, "imgid": i, "sentences": [{"raw": s, "tokens": s.split()} for s in sentences]}
        if coco:
            entry["filepath"] = "val2014"
        images.append(entry)
        _jpeg(os.path.join(root, "val2014" if coco else "flickr30k-images", filename), rng)
        if split == "test":
            captions.append(sentences[:5])
    with open(os.path.join(root, "dataset_coco.json" if coco else "dataset_flickr30k.json"), "w") as f:
        json.dump({"images": images, "dataset": "coco" if coco else "flickr30k"}, f)
    return Fixture(root, captions=captions)


def write_paper10(root: str, seed: int = 0) -> dict[str, Fixture]:
    """All 10 fixtures under `root/<dataset>`; returns what each loader must read back."""
    rng = np.random.default_rng(seed)
    writers = {
        "cifar10": lambda r: _cifar(r, rng, hundred=False),
        "cifar100": lambda r: _cifar(r, rng, hundred=True),
        "food101": lambda r: _food101(r, rng),
        "fgvc_aircraft": lambda r: _fgvc(r, rng),
        "pcam": lambda r: _pcam(r, rng),
        "pets": lambda r: _pets(r, rng),
        "flowers102": lambda r: _flowers102(r, rng),
        "dtd": lambda r: _dtd(r, rng),
        "flickr30k": lambda r: _karpathy(r, rng, coco=False),
        "coco": lambda r: _karpathy(r, rng, coco=True),
    }
    fixtures = {}
    for name, write in writers.items():
        directory = os.path.join(root, name)
        os.makedirs(directory, exist_ok=True)
        fixtures[name] = write(directory)
    return fixtures
