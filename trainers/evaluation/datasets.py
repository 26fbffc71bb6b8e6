"""Loaders of the paper10 test splits from the local directories where they already lie.

The 8 classification sets are read by torchvision's own dataset classes (`download=False`), in
the layouts those classes read; Flickr30k and MS-COCO retrieval come from Karpathy's split JSON
plus the image directory (1,000 and 5,000 test images, the first 5 captions of each). Nothing is
downloaded. Labels are mapped to the class order of `paper10.yaml` by name wherever torchvision
derives its class list from the files present, so a partial copy still scores against every class.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml
from PIL import Image
from torchvision import datasets as tv

from ..data.converters import karpathy_items
from ..data.shards import DataFormatError

CAPTIONS_PER_IMAGE = 5  # Karpathy's COCO test images have 5 to 7; the standard 5k/25k protocol keeps 5


@dataclass(frozen=True)
class ClassificationSet:
    """A zero-shot test split: `image(i)` decodes item i; `labels` index `classes`."""

    name: str
    source: Any  # the torchvision dataset: source[i] = (PIL image, its own target)
    labels: np.ndarray  # (N,) int, in paper10.yaml's class order
    classes: tuple[str, ...]
    templates: tuple[str, ...]

    def image(self, index: int) -> Image.Image:
        return self.source[index][0].convert("RGB")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class RetrievalSet:
    """An image-text test split: `paths[i]` is image i, `captions[i]` its ground-truth captions."""

    name: str
    paths: list[str]
    captions: list[list[str]]

    def image(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            return image.convert("RGB")

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class DatasetInfo:
    """What the spec calls a dataset, what its root must hold, and how it is scored."""

    name: str
    title: str
    layout: str  # the expected layout under the root, for error messages
    required: tuple[str, ...]  # paths under the root that must exist
    primary: str  # acc1 | mean_per_class_recall | mean_R@1
    load: Callable[[str], ClassificationSet | RetrievalSet]

    @property
    def retrieval(self) -> bool:
        return self.primary == "mean_R@1"


@cache
def prompts() -> dict[str, dict[str, tuple[str, ...]]]:
    """`{dataset: {"classes": (...), "templates": (...)}}` from the package's paper10.yaml."""
    text = resources.files(__package__).joinpath("paper10.yaml").read_text()
    return {name: {k: tuple(v) for k, v in entry.items()} for name, entry in yaml.safe_load(text).items()}


def _by_name(name: str, raw_classes: list[str], targets: list[int]) -> np.ndarray:
    """Dataset targets re-indexed into paper10.yaml's class order, matching names ("_" = " ")."""
    index = {c: i for i, c in enumerate(prompts()[name]["classes"])}
    mapping = []
    for raw in raw_classes:
        key = raw.replace("_", " ")
        if key not in index:
            raise DataFormatError(
                f"{name}: class {raw!r} is not one of its {len(index)} classes; does the root hold another dataset?"
            )
        mapping.append(index[key])
    return np.asarray(mapping, dtype=np.int64)[np.asarray(targets, dtype=np.int64)]


def _checked(name: str, targets: list[int]) -> np.ndarray:
    """Targets that are already class ids (from annotation files): checked against the class count."""
    labels = np.asarray(targets, dtype=np.int64)
    n = len(prompts()[name]["classes"])
    if len(labels) and (labels.min() < 0 or labels.max() >= n):
        raise DataFormatError(f"{name}: label {int(labels.max())} outside the {n} classes")
    return labels


def _classification(name: str, dataset: Any, labels: np.ndarray) -> ClassificationSet:
    entry = prompts()[name]
    return ClassificationSet(name, dataset, labels, entry["classes"], entry["templates"])


class _CIFAR10(tv.CIFAR10):
    """torchvision's CIFAR-10 reading only the test batch, checking files exist rather than md5s.

    The md5s are those of the official archive's files: a copy re-saved by another tool (or a
    test fixture) has other bytes and the same content, and a broken pickle fails on reading.
    """

    train_list: list[list[str]] = []

    def _check_integrity(self) -> bool:
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f, _ in self.test_list)

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _CIFAR100(_CIFAR10, tv.CIFAR100):
    train_list: list[list[str]] = []
    base_folder, test_list, meta = tv.CIFAR100.base_folder, tv.CIFAR100.test_list, tv.CIFAR100.meta


class _Flowers102(tv.Flowers102):
    """torchvision's Flowers-102, checking that files exist rather than md5s (see `_CIFAR10`)."""

    def _check_integrity(self) -> bool:
        files = [self._base_folder / self._file_dict[k][0] for k in ("label", "setid")]
        return self._images_folder.is_dir() and all(f.is_file() for f in files)


def _cifar(name: str, cls: type) -> Callable[[str], ClassificationSet]:
    def load(root: str) -> ClassificationSet:
        data = cls(root, train=False)
        return _classification(name, data, _by_name(name, data.classes, data.targets))

    return load


def _food101(root: str) -> ClassificationSet:
    data = tv.Food101(root, split="test")
    return _classification("food101", data, _by_name("food101", data.classes, data._labels))


def _fgvc_aircraft(root: str) -> ClassificationSet:
    data = tv.FGVCAircraft(root, split="test", annotation_level="variant")
    return _classification("fgvc_aircraft", data, _by_name("fgvc_aircraft", data.classes, data._labels))


def _pcam(root: str) -> ClassificationSet:
    import h5py

    data = tv.PCAM(root, split="test")
    with h5py.File(os.path.join(root, "pcam", "camelyonpatch_level_2_split_test_y.h5")) as targets:
        labels = targets["y"][:].reshape(-1)  # stored (N, 1, 1, 1)
    return _classification("pcam", data, _checked("pcam", labels.tolist()))


def _pets(root: str) -> ClassificationSet:
    data = tv.OxfordIIITPet(root, split="test", target_types="category")
    return _classification("pets", data, _checked("pets", data._labels))


def _flowers102(root: str) -> ClassificationSet:
    data = _Flowers102(root, split="test")
    return _classification("flowers102", data, _checked("flowers102", data._labels))


def _dtd(root: str) -> ClassificationSet:
    data = tv.DTD(root, split="test", partition=1)
    return _classification("dtd", data, _by_name("dtd", data.classes, data._labels))


def _karpathy(name: str, split_json: str, image_dir: str) -> Callable[[str], RetrievalSet]:
    def load(root: str) -> RetrievalSet:
        items = karpathy_items(os.path.join(root, split_json), os.path.join(root, image_dir), splits=["test"])
        return RetrievalSet(name, [i.path for i in items], [i.captions[:CAPTIONS_PER_IMAGE] for i in items])

    return load


_CIFAR10_DIR, _CIFAR100_DIR, _FGVC = "cifar-10-batches-py", "cifar-100-python", "fgvc-aircraft-2013b/data"
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "cifar10", "CIFAR-10", f"ROOT/{_CIFAR10_DIR}/{{test_batch, batches.meta}} (python pickles)",
            (f"{_CIFAR10_DIR}/test_batch", f"{_CIFAR10_DIR}/batches.meta"), "acc1", _cifar("cifar10", _CIFAR10),
        ),
        DatasetInfo(
            "cifar100", "CIFAR-100", f"ROOT/{_CIFAR100_DIR}/{{test, meta}} (python pickles)",
            (f"{_CIFAR100_DIR}/test", f"{_CIFAR100_DIR}/meta"), "acc1", _cifar("cifar100", _CIFAR100),
        ),
        DatasetInfo(
            "food101", "Food-101", "ROOT/food-101/{images/CLASS/ID.jpg, meta/test.json}",
            ("food-101/images", "food-101/meta/test.json"), "acc1", _food101,
        ),
        DatasetInfo(
            "fgvc_aircraft", "FGVC-Aircraft", f"ROOT/{_FGVC}/{{images/ID.jpg, variants.txt, images_variant_test.txt}}",
            (f"{_FGVC}/images", f"{_FGVC}/variants.txt", f"{_FGVC}/images_variant_test.txt"),
            "mean_per_class_recall", _fgvc_aircraft,
        ),
        DatasetInfo(
            "pcam", "PatchCamelyon", "ROOT/pcam/camelyonpatch_level_2_split_test_{x,y}.h5",
            ("pcam/camelyonpatch_level_2_split_test_x.h5", "pcam/camelyonpatch_level_2_split_test_y.h5"), "acc1", _pcam,
        ),
        DatasetInfo(
            "pets", "Oxford-IIIT Pets", "ROOT/oxford-iiit-pet/{images/BREED_N.jpg, annotations/test.txt}",
            ("oxford-iiit-pet/images", "oxford-iiit-pet/annotations/test.txt"), "mean_per_class_recall", _pets,
        ),
        DatasetInfo(
            "flowers102", "Flowers-102", "ROOT/flowers-102/{jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat}",
            ("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
            "mean_per_class_recall", _flowers102,
        ),
        DatasetInfo(
            "dtd", "DTD", "ROOT/dtd/dtd/{images/CLASS/FILE.jpg, labels/test1.txt} (torchvision's DTD root)",
            ("dtd/dtd/images", "dtd/dtd/labels/test1.txt"), "acc1", _dtd,
        ),
        DatasetInfo(
            "flickr30k", "Flickr30k (1k test)",
            "ROOT/{dataset_flickr30k.json, flickr30k-images/FILE.jpg} (Karpathy split)",
            ("dataset_flickr30k.json", "flickr30k-images"), "mean_R@1",
            _karpathy("flickr30k", "dataset_flickr30k.json", "flickr30k-images"),
        ),
        DatasetInfo(
            "coco", "MS-COCO (5k test)",
            "ROOT/{dataset_coco.json, val2014/FILE.jpg} (Karpathy split; its filepath is honoured)",
            ("dataset_coco.json", "val2014"), "mean_R@1", _karpathy("coco", "dataset_coco.json", ""),
        ),
    )
}


def check_root(name: str, root: str) -> None:
    """Raises `ValueError` naming the dataset, the path and the layout when `root` cannot hold it."""
    if name not in DATASETS:
        raise ValueError(f"suite.roots.{name}: unknown dataset; allowed: {', '.join(DATASETS)}")
    info = DATASETS[name]
    for relative in info.required:
        path = os.path.join(root, relative)
        if not os.path.exists(path):
            raise ValueError(
                f"suite.roots.{name}={root!r}: {path} does not exist; {info.title} is expected as {info.layout}"
            )


# The torchvision attribute that lists a dataset's test image files (the other sets are pickles or HDF5).
_IMAGE_FILES = {"food101": "_image_files", "fgvc_aircraft": "_image_files", "pets": "_images",
                "flowers102": "_image_files", "dtd": "_image_files"}  # fmt: skip


def check_images(name: str, root: str) -> None:
    """Raises `ValueError` when an image of the test split under `root` is not a file, naming the
    dataset, how many are missing, the first of them and the layout (before any training)."""
    data = load_dataset(name, root)
    if isinstance(data, RetrievalSet):
        paths = data.paths
    elif name in _IMAGE_FILES:
        paths = [str(p) for p in getattr(data.source, _IMAGE_FILES[name])]
    else:
        return  # the files `check_root` found hold the images
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        info = DATASETS[name]
        raise ValueError(
            f"suite.roots.{name}={root!r}: {len(missing)} of the {len(paths)} test images are missing, first "
            f"{', '.join(missing[:3])}; {info.title} is expected as {info.layout}"
        )


def load_dataset(name: str, root: str) -> ClassificationSet | RetrievalSet:
    """The test split of paper10 dataset `name` under `root` (checked first, see `check_root`)."""
    check_root(name, root)
    return DATASETS[name].load(root)
