"""The dual encoder: image and text towers, linear projections, L2 norm, a temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, ObjectiveConfig
from .image import build_image_tower
from .text import build_text_tower

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's cap on 1/t


class DualEncoder(nn.Module):
    """Maps images and captions to L2-normalised embeddings in one space.

    `logit_scale` = ln(1/t), initialised from the objective's temperature; a parameter when
    the temperature is learnable (clamp it with `clamp_logit_scale` after each step), else a
    buffer.
    """

    def __init__(self, model: ModelConfig, objective: ObjectiveConfig) -> None:
        super().__init__()
        self.image_tower, image_dim = build_image_tower(model.image_tower, model.image_weights)
        self.text_tower = build_text_tower(model.text_tower, model.vocab_size, model.max_length, model.text_weights)
        self.image_proj = nn.Linear(image_dim, model.embed_dim, bias=False)
        self.text_proj = nn.Linear(self.text_tower.out_dim, model.embed_dim, bias=False)
        init = torch.tensor(math.log(1.0 / objective.temperature))
        if objective.learnable_temperature:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image_tower(images)), dim=-1)  # (B, D)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_tower(input_ids, attention_mask)), dim=-1)  # (B, D)

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(images), self.encode_text(input_ids, attention_mask)

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Caps 1/t at 100 (CLIP, open_clip); call after every optimizer step."""
        self.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
