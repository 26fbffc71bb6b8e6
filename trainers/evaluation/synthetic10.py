"""The `synthetic10` suite: 8 zero-shot attribute tasks and 2 retrieval tasks on held-out scenes.

Held-out scenes are attribute combinations never seen in training. Zero-shot tasks classify one
attribute (or the colour-shape pair) from prompts built with the corpus' own words; retrieval
matches images with their long captions (all seven attributes) or their short ones (a few).
Primary metrics: acc@1 for zero-shot tasks, the mean of the two R@1 for retrieval (docs/methods.md).
Tiers: `cheap` is the first 256 held-out scenes (what ASHA sees), `full` all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq
import torch

from ..data.loading import Preprocess
from ..data.scenes import ATTRIBUTES, LABEL_NAMES, N_LONG_CAPTIONS
from ..data.shards import resolve_shards
from ..data.tokenizer import load_tokenizer
from .metrics import ItemScores
from .tasks import encode_pixels, evaluating, score_retrieval, score_zero_shot, text_encoder

if TYPE_CHECKING:
    from .settings import SuiteSettings

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


def score_synthetic10(
    model: torch.nn.Module,
    eval_set: EvalSet,
    tokenizer_dir: str,
    max_length: int = 32,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
    """Metrics of the 10 tasks (each with `primary`) and each task's primary metric per item (for
    the bootstrap). The images are embedded once and shared by all tasks."""
    device = torch.device(device)
    encode = text_encoder(model, load_tokenizer(tokenizer_dir), max_length, device, batch_size)
    results: dict[str, dict[str, float]] = {}
    items: dict[str, ItemScores] = {}
    with evaluating(model):
        image = encode_pixels(model, torch.from_numpy(eval_set.images).split(batch_size), device)
        for task in ZERO_SHOT_TASKS:
            # Paper D's image-side metrics where labels exist: the colour-shape pair is the label.
            results[task.name], items[task.name] = score_zero_shot(
                image, eval_set.classes[task.attribute], task.class_texts, task.templates, encode,
                image_metrics=task.attribute == "label",
            )
        for task in RETRIEVAL_TASKS:
            captions = [c[task.first_caption : task.last_caption] for c in eval_set.captions]
            results[task.name], items[task.name] = score_retrieval(image, captions, encode)
    return results, items


def chance_levels() -> dict[str, float]:
    """Expected primary metric of a random model (zero-shot: 1 / classes; retrieval: about 1 / N)."""
    return {t.name: 1 / len(t.class_texts) for t in ZERO_SHOT_TASKS}


class Synthetic10:
    """The `synthetic10` entry of `suites.SUITES`: the corpus' held-out scenes (`data.heldout`)."""

    def check(self, settings: SuiteSettings, images: bool) -> None:
        if settings.heldout is None:
            raise ValueError("data.heldout is missing; the synthetic10 suite scores trials on the held-out split")

    def skipped(self, settings: SuiteSettings) -> list[str]:
        return []

    def load(self, settings: SuiteSettings, tier: str, image_size: int) -> Any:
        return load_eval_set(settings.heldout, tier, image_size)  # type: ignore[arg-type]  # checked above

    def score(
        self, data: Any, model: torch.nn.Module, tokenizer_dir: str, max_length: int, image_size: int, device: torch.device | str
    ) -> tuple[dict[str, dict[str, float]], dict[str, ItemScores]]:
        return score_synthetic10(model, data, tokenizer_dir, max_length, device)

    def chance_levels(self, settings: SuiteSettings, tier: str) -> dict[str, float]:
        return chance_levels()
