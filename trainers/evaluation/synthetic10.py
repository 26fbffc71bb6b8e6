"""The `synthetic10` suite: 8 zero-shot attribute tasks and 2 retrieval tasks on held-out scenes.

Held-out scenes are attribute combinations never seen in training. Zero-shot tasks classify one
attribute (or the colour-shape pair) from prompts built with the corpus' own words; retrieval
matches images with their long captions (all seven attributes) or their short ones (a few).
Primary metrics: acc@1 for zero-shot tasks, the mean of the two R@1 for retrieval (DESIGN.md).
Tiers: `cheap` is the first 256 held-out scenes (what ASHA sees), `full` all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch

from ..data.loading import Preprocess
from ..data.scenes import ATTRIBUTES, LABEL_NAMES, N_LONG_CAPTIONS
from ..data.shards import resolve_shards
from ..data.tokenizer import load_tokenizer
from ..data.transforms import normalize
from .metrics import ItemScores, class_embeddings, image_retrieval_r1, knn_accuracy, retrieval, zero_shot

CHEAP_SIZE = 256
_POSITION_TEXT = ("on the left", "on the right", "at the top", "at the bottom", "in the center")
_COUNT_TEXT = ("a single", "two", "three")


@dataclass(frozen=True)
class ZeroShotTask:
    """Classify `attribute`; class c is prompted as each template formatted with class_texts[c]."""

    name: str
    attribute: str  # a scene column, or "label" for the colour-shape pair
    class_texts: tuple[str, ...]
    templates: tuple[str, ...]


@dataclass(frozen=True)
class RetrievalTask:
    name: str
    first_caption: int  # captions[first:last] of each image are its ground truth
    last_caption: int


ZERO_SHOT_TASKS = (
    ZeroShotTask("shape", "shape", ATTRIBUTES["shape"], ("a {}", "an image of a {}", "a picture with a {}")),
    ZeroShotTask("colour", "colour", ATTRIBUTES["colour"], ("{}", "coloured {}", "an image of something coloured {}")),
    ZeroShotTask("size", "size", ATTRIBUTES["size"], ("{}", "a single {}", "an image of {} things")),
    ZeroShotTask("position", "position", _POSITION_TEXT, ("{}", "a picture with something {}")),
    ZeroShotTask("count", "count", _COUNT_TEXT, ("{}", "there are {}", "an image of {} things")),
    ZeroShotTask("texture", "texture", ATTRIBUTES["texture"], ("{}", "a {} pattern", "an image of something {}")),
    ZeroShotTask("background", "background", ATTRIBUTES["background"], ("on a {} background", "a {} picture", "over {}")),
    ZeroShotTask("colour_shape", "label", LABEL_NAMES, ("a {}", "an image of a {}", "{}")),
)
RETRIEVAL_TASKS = (
    RetrievalTask("retrieval_long", 0, N_LONG_CAPTIONS),
    RetrievalTask("retrieval_short", N_LONG_CAPTIONS, N_LONG_CAPTIONS + 2),
)
TASK_NAMES = tuple(t.name for t in ZERO_SHOT_TASKS + RETRIEVAL_TASKS)


@dataclass(frozen=True)
class EvalSet:
    """Held-out scenes ready for a model: uint8 images, class ids per attribute, captions."""

    images: np.ndarray  # (N, 3, S, S) uint8
    classes: dict[str, np.ndarray]  # attribute (and "label") -> (N,) class index
    captions: list[list[str]]


def load_eval_set(heldout: str, tier: str, image_size: int) -> EvalSet:
    """Reads the held-out split (all of it for `full`, the first 256 scenes for `cheap`).

    Raises:
        ValueError: an unknown tier.
    """
    if tier not in ("cheap", "full"):
        raise ValueError(f"tier={tier!r}; allowed: cheap, full")
    table = pq.read_table(resolve_shards(heldout))
    if tier == "cheap":
        table = table.slice(0, CHEAP_SIZE)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    preprocess = Preprocess(tokenizer_dir="", image_size=image_size, train=False)
    images = preprocess.images({"image": np.asarray(columns["image"], dtype=object)})
    classes = {name: np.array([values.index(v) for v in columns[name]]) for name, values in ATTRIBUTES.items()}
    classes["label"] = np.asarray(columns["label"])
    return EvalSet(images, classes, columns["captions"])


@torch.no_grad()
def _encode_images(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch: int) -> np.ndarray:
    out = [model.encode_image(normalize(torch.from_numpy(images[i : i + batch]).to(device))) for i in range(0, len(images), batch)]
    return torch.cat(out).float().cpu().numpy()


@torch.no_grad()
def _encode_texts(model, texts: list[str], tokenizer_dir: str, max_length: int, device, batch: int) -> np.ndarray:
    tokenizer = load_tokenizer(tokenizer_dir)
    out = []
    for i in range(0, len(texts), batch):
        tokens = tokenizer(texts[i : i + batch], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        out.append(model.encode_text(tokens["input_ids"].to(device), tokens["attention_mask"].to(device)))
    return torch.cat(out).float().cpu().numpy()


def evaluate_synthetic10(
    model: torch.nn.Module,
    eval_set: EvalSet,
    tokenizer_dir: str,
    max_length: int = 32,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> dict[str, dict[str, float]]:
    """Metrics of the 10 tasks; each task's dict holds `primary` and its named metrics.

    The images are embedded once and shared by all tasks.
    """
    return score_synthetic10(model, eval_set, tokenizer_dir, max_length, device, batch_size)[0]


def score_synthetic10(
    model: torch.nn.Module,
    eval_set: EvalSet,
    tokenizer_dir: str,
    max_length: int = 32,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
    """`evaluate_synthetic10`'s metrics plus each task's primary metric per item (for the bootstrap)."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    image = _encode_images(model, eval_set.images, device, batch_size)
    encode = lambda texts: _encode_texts(model, texts, tokenizer_dir, max_length, device, batch_size)  # noqa: E731
    results: dict[str, dict[str, float]] = {}
    items: dict[str, ItemScores] = {}
    for task in ZERO_SHOT_TASKS:
        prompts = [template.format(c) for c in task.class_texts for template in task.templates]
        classes = class_embeddings(encode(prompts).reshape(len(task.class_texts), len(task.templates), -1))
        labels = eval_set.classes[task.attribute]
        metrics = zero_shot(image, classes, labels)
        results[task.name] = {"primary": metrics["acc1"], **{k: metrics[k] for k in ("acc1", "acc5", "mean_per_class_recall")}}
        items[task.name] = ItemScores.accuracy(metrics["correct1"])
        if task.attribute == "label":  # paper D's image-side metrics, where labels exist
            results[task.name]["image_r1"] = float(image_retrieval_r1(image, labels).mean())
            results[task.name]["knn_acc"] = float(knn_accuracy(image, labels, image, labels, leave_one_out=True).mean())
    for task in RETRIEVAL_TASKS:
        per_image = [captions[task.first_caption : task.last_caption] for captions in eval_set.captions]
        text_image = np.repeat(np.arange(len(per_image)), [len(c) for c in per_image])
        metrics = retrieval(image, encode([c for cs in per_image for c in cs]), text_image)
        results[task.name] = {"primary": metrics["mean_R@1"], **{k: v for k, v in metrics.items() if isinstance(v, float)}}
        items[task.name] = ItemScores.retrieval(metrics["i2t_hit1"], metrics["t2i_hit1"], text_image)
    model.train(was_training)
    return results, items


def chance_levels() -> dict[str, float]:
    """Expected primary metric of a random model (zero-shot: 1 / classes; retrieval: about 1 / N)."""
    return {t.name: 1 / len(t.class_texts) for t in ZERO_SHOT_TASKS}


def flatten(results: dict[str, dict[str, float]], prefix: str = "bench") -> dict[str, float]:
    """`{"bench/shape/acc1": ..., ...}` plus `bench/mean_primary`, for reports and MLflow."""
    flat = {f"{prefix}/{task}/{name}": value for task, metrics in results.items() for name, value in metrics.items()}
    flat[f"{prefix}/mean_primary"] = float(np.mean([m["primary"] for m in results.values()]))
    return flat
