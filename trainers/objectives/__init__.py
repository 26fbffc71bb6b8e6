"""Loss terms of every research objective; importing this package registers them all."""

from . import arcface, clip, unimodal  # noqa: F401  (registration side effect)
from .base import TERMS, LossContext, ObjectiveInputs, register_term
from .distributed import WorkerGroup
from .objective import ContrastiveObjective

__all__ = ["TERMS", "ContrastiveObjective", "LossContext", "ObjectiveInputs", "WorkerGroup", "register_term"]
