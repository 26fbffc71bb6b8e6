"""Loss terms of every research objective; importing this package registers them all."""

from . import arcface, clip, unimodal  # noqa: F401  (registration side effect)
from .base import TERMS, LossContext, LossTerm, ObjectiveInputs, full_weights, register_term
from .distributed import WorkerGroup
from .objective import ContrastiveObjective

__all__ = [
    "TERMS", "ContrastiveObjective", "LossContext", "LossTerm", "ObjectiveInputs", "WorkerGroup", "full_weights",
    "register_term",
]  # fmt: skip
