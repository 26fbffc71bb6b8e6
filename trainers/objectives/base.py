"""What every loss term sees, and the registry of loss terms.

A term is a function of (inputs, context) returning a scalar, registered with what the rest of
the code needs to know about it: the config knob that weights it in the full objective (the
stage plan reads it), and the `ObjectiveInputs` fields it needs (the train loop computes only
those, and a trial decodes second views only when some term of its plan needs them). Each term
is logged by its name (`loss/<name>`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch

from ..config import TrialConfig
from .distributed import WorkerGroup


@dataclass
class ObjectiveInputs:
    """One worker's slice of the global batch: L2-normalised embeddings and batch metadata.

    Optional fields are needed only by the terms that use them (named in brackets).
    """

    image: torch.Tensor  # (B_local, D)
    text: torch.Tensor  # (B_local, D)
    image_view: torch.Tensor | None = None  # (B_local, D) second augmented view [image_image]
    text_view: torch.Tensor | None = None  # (B_local, D) second caption view [text_text]
    image_cluster: torch.Tensor | None = None  # (B_local,) int64 [clip with cluster negatives]
    text_cluster: torch.Tensor | None = None  # (B_local,) int64
    labels: torch.Tensor | None = None  # (B_local,) int64 [arcface]
    pseudo_text: torch.Tensor | None = None  # (B_local, P, D) frozen pseudo-caption embeddings [pseudo_caption]
    pseudo_mask: torch.Tensor | None = None  # (B_local, P) bool, True where a pseudo-caption exists


@dataclass
class LossContext:
    """State shared by the terms of one step: config, workers, temperature, cached gathers."""

    cfg: TrialConfig
    group: WorkerGroup
    logit_scale: torch.Tensor  # scalar, ln(1/t)
    modules: dict[str, torch.nn.Module] = field(default_factory=dict)  # e.g. arcface proxies
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. centroid cosine matrices
    _gathered: dict[int, torch.Tensor] = field(default_factory=dict)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable all-gather, done once per tensor per step."""
        if id(x) not in self._gathered:
            self._gathered[id(x)] = self.group.gather(x)
        return self._gathered[id(x)]

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.targets(len(x), x.device)


Term = Callable[[ObjectiveInputs, LossContext], torch.Tensor]
VIEW_INPUTS = ("image_view", "text_view")  # the inputs that make the data loader decode second views


@dataclass(frozen=True)
class LossTerm:
    """A registered term.

    Attributes:
        name: the key stage plans weight it by, and its metric `loss/<name>`.
        fn: the term.
        weight: its weight in the full objective: a number, or the dotted config knob that holds
            it (`unimodal.image_weight`); None for a term only a schedule's stage places.
        needs: the optional `ObjectiveInputs` fields it reads.
    """

    name: str
    fn: Term
    weight: float | str | None
    needs: tuple[str, ...] = ()

    @property
    def needs_views(self) -> bool:
        return any(field_name in VIEW_INPUTS for field_name in self.needs)


TERMS: dict[str, LossTerm] = {}


def register_term(name: str, weight: float | str | None, needs: tuple[str, ...] = ()) -> Callable[[Term], Term]:
    """Registers a loss term under `name` (see `LossTerm` for `weight` and `needs`)."""
    unknown = sorted(set(needs) - {f.name for f in fields(ObjectiveInputs)})
    if unknown:
        raise ValueError(f"loss term {name!r} needs ObjectiveInputs.{unknown[0]}, which does not exist")

    def wrap(fn: Term) -> Term:
        if name in TERMS:
            raise ValueError(f"loss term {name!r} registered twice")
        TERMS[name] = LossTerm(name, fn, weight, needs)
        return fn

    return wrap


def full_weights(cfg: TrialConfig) -> dict[str, float]:
    """The full objective's non-zero weights, term by term (what a one-stage trial trains)."""
    flat = cfg.flat()
    weights = {t.name: flat[t.weight] if isinstance(t.weight, str) else t.weight for t in TERMS.values()}
    return {name: float(w) for name, w in weights.items() if w}


def require(value: torch.Tensor | None, field_name: str, term: str) -> torch.Tensor:
    """The input a term needs, or an error that says which term needs which field."""
    if value is None:
        raise ValueError(f"loss term {term!r} needs ObjectiveInputs.{field_name}, which this batch lacks")
    return value
