"""Paper A's logit transforms, the registry of them: a fixed monotone f spreads the similarity matrix.

Mohammadi et al., "Image-Text Connection: Exploring the Expansion of the Diversity Within Joint
Feature Space Similarity Scores", IEEE Access 2023. docs/methods.md, method A:
z_ij = f(s_ij) / t. (f(s_ij / t) is not a variant: it is not monotone for sine, and bounds the
sigmoids' logits.)

Each entry names the `objective.*` knobs it reads; `config.py` derives from this registry the
allowed values of `objective.logit_transform` and when each knob acts, so a new transform is
one decorated function here (plus a search space that draws it). This module sits outside
`objectives/` because `config.py` reads it, and everything in `objectives/` reads `config.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .config import ObjectiveConfig

TransformFn = Callable[[torch.Tensor, "ObjectiveConfig"], torch.Tensor]


@dataclass(frozen=True)
class LogitTransform:
    """A registered f: its name (a value of `objective.logit_transform`), the function of the
    cosine matrix and the objective config, and the `objective.*` knobs it reads."""

    name: str
    f: TransformFn
    reads: tuple[str, ...] = ()


TRANSFORMS: dict[str, LogitTransform] = {}


def logit_transform(name: str, reads: tuple[str, ...] = ()) -> Callable[[TransformFn], TransformFn]:
    """Registers f under `name`; `reads`: the `objective.*` knobs f uses (they act only under it)."""

    def wrap(f: TransformFn) -> TransformFn:
        if name in TRANSFORMS:
            raise ValueError(f"logit transform {name!r} registered twice")
        TRANSFORMS[name] = LogitTransform(name, f, reads)
        return f

    return wrap


def transforms_reading(knob: str) -> tuple[str, ...]:
    """The transforms under which `objective.<knob>` acts."""
    return tuple(name for name, t in TRANSFORMS.items() if knob in t.reads)


# The first entry is the baseline (vanilla CLIP) and the config's default.
@logit_transform("identity")
def identity(s: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    return s


@logit_transform("sine", reads=("omega",))
def sine(s: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """f(s) = sin(omega s); monotone on [-1, 1] for omega <= pi/2."""
    return torch.sin(cfg.omega * s)


@logit_transform("sigmoid", reads=("k", "c"))
def sigmoid(s: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """f(s) = sigmoid(k (s - c)), range (0, 1)."""
    return torch.sigmoid(cfg.k * (s - cfg.c))


@logit_transform("sigmoid_centered", reads=("k",))
def sigmoid_centered(s: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """f(s) = 2 sigmoid(k s) - 1, range (-1, 1), f(0) = 0."""
    return 2 * torch.sigmoid(cfg.k * s) - 1
