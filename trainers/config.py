"""The trial config: every research knob of docs/methods.md, typed, frozen and validated.

The baseline ("vanilla CLIP") is every knob at its first allowed value, which is also its
default, so `TrialConfig()` is the baseline. A knob that acts only under other knobs' values
declares it beside itself (`knob(default, acts=...)`): `TrialConfig.dead_knobs` lists the ones
a config ignores, and the sweep spec refuses a search space that draws a knob where it is dead.
`TrialConfig.from_dict` builds one from nested dicts (YAML, a Tune param space) and names the
dotted path of any bad field.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .liveness import Acts, acts_if, acts_if_nonzero, knob
from .logit_transforms import TRANSFORMS, transforms_reading
from .typed import Section, build, check_range, hints_of

LogitTransformName = Literal[tuple(TRANSFORMS)]  # type: ignore[valid-type]  # the registry's names, baseline first
Weighting = Literal["none", "cluster_weight", "cluster_mask", "cluster_both"]
ClusterFeatures = Literal["initial", "current"]
BatchingMode = Literal["random", "cluster_hard"]
ScheduleKind = Literal["joint", "multi_stage", "two_stage"]
Stage1Loss = Literal["arcface", "simclr"]
ImageTower = Literal["tiny_resnet", "resnet18", "resnet34", "resnet50"]
TextTower = Literal["tiny_distilbert", "distilbert", "tiny_bert", "bert"]
Precision = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class ModelConfig(Section):
    """Dual encoder towers and the shared embedding space."""

    section = "model"

    image_tower: ImageTower = "tiny_resnet"  # tiny_resnet: widths 16-32-64-128, for CPU runs
    image_size: int = 64
    image_weights: str | None = None  # local torch state-dict file for the image tower
    text_tower: TextTower = "tiny_distilbert"  # tiny_*: 2 layers, hidden 128, for CPU runs
    text_weights: str | None = None  # local directory of a transformers checkpoint
    vocab_size: int = knob(2000, acts=acts_if("model.text_weights", None))  # else the checkpoint's own
    max_length: int = 32
    embed_dim: int = 128

    def tokenizer_dir(self, corpus_tokenizer: str) -> str:
        """The tokenizer that fits the text tower: a pretrained checkpoint's own, else the corpus'."""
        return self.text_weights or corpus_tokenizer

    def _validate(self) -> None:
        check_range("model.image_size", self.image_size, 16)
        check_range("model.embed_dim", self.embed_dim, 1)
        check_range("model.max_length", self.max_length, 4)
        for name in ("image_weights", "text_weights"):
            path = getattr(self, name)
            if path is not None and not os.path.exists(path):
                raise ValueError(f"model.{name}={path!r}: no such path; pretrained weights load only from local disk")


def _read_by(knob_name: str) -> Acts:
    return acts_if("objective.logit_transform", *transforms_reading(knob_name))


@dataclass(frozen=True)
class ObjectiveConfig(Section):
    """Temperature and paper A's logit transform."""

    section = "objective"

    temperature: float = 0.07  # initial t; logit_scale = ln(1/t), clamped to ln(100)
    learnable_temperature: bool = True
    logit_transform: LogitTransformName = "identity"
    # Each knob acts under the transforms that declare they read it (`logit_transforms.py`).
    omega: float = knob(math.pi / 2, acts=_read_by("omega"))  # monotone on [-1, 1] up to pi/2
    k: float = knob(10.0, acts=_read_by("k"))  # slope
    c: float = knob(0.0, acts=_read_by("c"))  # centre

    def _validate(self) -> None:
        check_range("objective.temperature", self.temperature, 0.0, strict_low=True)
        if self.temperature < 0.01:
            raise ValueError(f"objective.temperature={self.temperature}; allowed: >= 0.01 (logit scale is capped at 100)")
        if not 0 < self.omega <= math.pi / 2:
            raise ValueError(
                f"objective.omega={self.omega!r}; allowed: 0 < omega <= pi/2 = 1.5707963267948966: sin(omega s) is monotone "
                "on [-1, 1] only up to pi/2"
            )
        check_range("objective.k", self.k, 0.0, strict_low=True)


_CLUSTERED = acts_if("negatives.weighting", "cluster_weight", "cluster_mask", "cluster_both")
_WEIGHTED = acts_if("negatives.weighting", "cluster_weight", "cluster_both")
_MASKED = acts_if("negatives.weighting", "cluster_mask", "cluster_both")
# Paper D's stages train arcface/simclr, then clip alone: the uni-modal weights have no stage.
_UNIMODAL_STAGES = acts_if("schedule.kind", "joint", "multi_stage")


@dataclass(frozen=True)
class NegativesConfig(Section):
    """Paper B's cluster-aware negatives (all but `weighting` matter only when it is not none)."""

    section = "negatives"

    weighting: Weighting = "none"
    # K_I: capped by the data (`TrialConfig.check_data`)
    n_clusters_image: int = knob(50, acts=_CLUSTERED)
    # K_T: only the mask reads the text clusters (the weight is 1 + lambda (1 - C^I) / 2)
    n_clusters_text: int = knob(50, acts=_MASKED)
    strength: float = knob(1.0, acts=_WEIGHTED)  # lambda in w = 1 + lambda (1 - C^I) / 2
    threshold: float = knob(0.9, acts=_MASKED)  # theta of the false-negative mask
    features: ClusterFeatures = knob("initial", acts=_CLUSTERED)  # initial: towers at step 0; current: re-embed
    recluster_every: int = knob(1, acts=_CLUSTERED & acts_if("negatives.features", "current"))  # epochs

    def _validate(self) -> None:
        check_range("negatives.n_clusters_image", self.n_clusters_image, 2)
        check_range("negatives.n_clusters_text", self.n_clusters_text, 2)
        check_range("negatives.strength", self.strength, 0.0)
        check_range("negatives.threshold", self.threshold, -1.0, 1.0)
        check_range("negatives.recluster_every", self.recluster_every, 1)


@dataclass(frozen=True)
class UnimodalConfig(Section):
    """Paper C's uni-modal contrast: L = L_cross + alpha L_II + beta L_TT."""

    section = "unimodal"

    image_weight: float = knob(0.0, acts=_UNIMODAL_STAGES)  # alpha
    text_weight: float = knob(0.0, acts=_UNIMODAL_STAGES)  # beta
    # the text view by random token deletion, for items with one caption
    token_drop: float = knob(0.1, acts=acts_if_nonzero("unimodal.text_weight") & _UNIMODAL_STAGES)

    def _validate(self) -> None:
        check_range("unimodal.image_weight", self.image_weight, 0.0)
        check_range("unimodal.text_weight", self.text_weight, 0.0)
        check_range("unimodal.token_drop", self.token_drop, 0.0, 0.9)


@dataclass(frozen=True)
class BatchingConfig(Section):
    """Paper C's clustered hard-negative batching."""

    section = "batching"

    mode: BatchingMode = "random"
    n_clusters: int | None = knob(None, acts=acts_if("batching.mode", "cluster_hard"))  # None: about N / global batch
    recluster_every: int = knob(1, acts=acts_if("batching.mode", "cluster_hard"))  # epochs

    def _validate(self) -> None:
        if self.n_clusters is not None:
            check_range("batching.n_clusters", self.n_clusters, 2)
        check_range("batching.recluster_every", self.recluster_every, 1)


_TWO_STAGE = acts_if("schedule.kind", "two_stage")
_ARCFACE = _TWO_STAGE & acts_if("schedule.stage1_loss", "arcface")
_MCIP = _TWO_STAGE & acts_if("schedule.pseudo_captions", True)


@dataclass(frozen=True)
class ScheduleConfig(Section):
    """Stages: joint (one stage), multi_stage (paper C), two_stage (paper D)."""

    section = "schedule"

    kind: ScheduleKind = "joint"
    stage1_epochs: int = knob(1, acts=acts_if("schedule.kind", "multi_stage", "two_stage"))
    stage1_loss: Stage1Loss = knob("arcface", acts=_TWO_STAGE)  # arcface needs labels
    pseudo_captions: bool = knob(False, acts=_TWO_STAGE)  # MCIP
    # ArcMargin's s and m: the arcface loss and MCIP's pseudo-caption loss both use them
    arcface_scale: float = knob(30.0, acts=_ARCFACE | _MCIP)
    arcface_margin: float = knob(0.1, acts=_ARCFACE | _MCIP)
    proxy_lr_multiplier: float = knob(100.0, acts=_ARCFACE)  # the class proxies' learning rate
    pseudo_top_k: int = knob(20, acts=_MCIP)
    pseudo_min_cosine: float = knob(0.27, acts=_MCIP)
    pseudo_weight: float = knob(0.25, acts=_MCIP)  # stage 1 = (1 - w) L_stage1 + w L_mc

    def _validate(self) -> None:
        check_range("schedule.stage1_epochs", self.stage1_epochs, 1)
        check_range("schedule.arcface_scale", self.arcface_scale, 0.0, strict_low=True)
        check_range("schedule.arcface_margin", self.arcface_margin, 0.0, math.pi / 2)
        check_range("schedule.pseudo_top_k", self.pseudo_top_k, 1)
        check_range("schedule.pseudo_weight", self.pseudo_weight, 0.0, 1.0)


@dataclass(frozen=True)
class OptimConfig(Section):
    """AdamW with cosine schedule and warm-up; batch_size is the global batch."""

    section = "optim"

    epochs: int = 5
    batch_size: int = 256
    lr: float = 2e-3  # tiny towers from scratch: 5 epochs of the default corpus reach ~0.64 mean primary
    weight_decay: float = 0.1
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0  # every random draw of the trial derives from it (see `seeding`)
    # A second key of the augmentation stream only (crops, flips, jitter, caption draws): two runs
    # of one seed with different salts share initial weights and data order but not their
    # augmentations. For calibration (benchmarks/aa_calibration.py's paired A/A); 0: no salt.
    augment_salt: int = 0
    deterministic: bool = False  # also torch's deterministic kernels (CUDA: slower; CPU runs repeat without it)
    precision: Precision = "bf16"  # autocast on CUDA (fp16 with loss scaling); CPU always trains in fp32

    def _validate(self) -> None:
        check_range("optim.epochs", self.epochs, 1)
        check_range("optim.batch_size", self.batch_size, 2)
        check_range("optim.lr", self.lr, 0.0, strict_low=True)
        check_range("optim.weight_decay", self.weight_decay, 0.0)
        check_range("optim.warmup_steps", self.warmup_steps, 0)
        check_range("optim.grad_clip", self.grad_clip, 0.0)

    def precision_on(self, device_type: str) -> str:
        """The precision a trial trains in on `device_type` (autocast pays only on CUDA)."""
        return self.precision if device_type == "cuda" else "fp32"


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs to know about what it trains."""

    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    unimodal: UnimodalConfig = field(default_factory=UnimodalConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.schedule.kind != "joint" and self.schedule.stage1_epochs >= self.optim.epochs:
            raise ValueError(
                f"schedule.stage1_epochs={self.schedule.stage1_epochs}; allowed: fewer than "
                f"optim.epochs={self.optim.epochs} (stage 2 needs at least one epoch)"
            )
        # A loss weight the schedule never uses would make the variant look like something it
        # is not (the other dead knobs keep their defaults' meaning and are merely unused).
        for name in ("image_weight", "text_weight"):
            value = getattr(self.unimodal, name)
            if value and self.schedule.kind == "two_stage":
                raise ValueError(
                    f"unimodal.{name}={value!r} has no effect under schedule.kind='two_stage' (stage 1 trains "
                    f"{self.schedule.stage1_loss}, stage 2 re-aligns the text tower with clip alone); allowed there: 0"
                )

    @staticmethod
    def acts(dotted: str) -> Acts | None:
        """When the knob `section.name` acts; None if always."""
        section, name = dotted.split(".", 1)
        cls = hints_of(TrialConfig)[section]
        return next(f.metadata.get("acts") for f in fields(cls) if f.name == name)

    def dead_knobs(self) -> dict[str, Acts]:
        """The knobs this config ignores, each with the condition under which it would act."""
        flat = self.flat()
        return {name: acts for name in flat if (acts := self.acts(name)) is not None and not acts.holds(flat)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        """Builds a config from nested dicts; unknown or mistyped fields raise `ValueError`."""
        return build(cls, data, "", REMOVED_KNOBS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """`{"objective.temperature": 0.07, ...}`: MLflow params, Tune search-space keys."""
        return {f"{section}.{k}": v for section, values in self.to_dict().items() for k, v in values.items()}

    def check_data(self, n_items: int, has_labels: bool) -> None:
        """Checks the knobs that depend on the training data (before any worker starts).

        Raises:
            ValueError: more clusters than items, or ArcFace without labels.
        """
        dead = self.dead_knobs()
        for name in ("n_clusters_image", "n_clusters_text"):
            value = getattr(self.negatives, name)
            if f"negatives.{name}" not in dead and value > n_items:
                raise ValueError(f"negatives.{name}={value}; allowed: at most the {n_items} training items")
        if self.batching.mode == "cluster_hard" and (self.batching.n_clusters or 0) > n_items:
            raise ValueError(f"batching.n_clusters={self.batching.n_clusters}; allowed: at most the {n_items} training items")
        if self.schedule.kind == "two_stage" and self.schedule.stage1_loss == "arcface" and not has_labels:
            raise ValueError(
                "schedule.stage1_loss='arcface' needs a `label` column and the training data has none; "
                "allowed without labels: 'simclr'"
            )


REMOVED_KNOBS = {
    "objective.transform_before_temperature": (
        "only z = f(s)/t is a variant (docs/methods.md, method A): f(s/t) is not monotone for sine and bounds "
        "the sigmoids' logits; delete the field"
    ),
}
