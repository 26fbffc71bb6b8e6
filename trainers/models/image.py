"""Image towers: torchvision ResNets, and a tiny ResNet for CPU runs. No hub downloads."""

from __future__ import annotations

import os

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock


class TinyResNet(nn.Module):
    """A 4-stage ResNet of BasicBlocks with narrow widths (default 16-32-64-128), for 64 px.

    The stem strides by 2 (64 px -> 32 px): 4x fewer FLOPs than a full-resolution stem, and an
    epoch of 10k scenes fits well under a minute on 2 CPU cores.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages, in_ch = [], widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or in_ch != width:
                down = nn.Sequential(nn.Conv2d(in_ch, width, 1, stride, bias=False), nn.BatchNorm2d(width))
            stages.append(BasicBlock(in_ch, width, stride, down))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        # A 2x2 grid instead of one global average: where things are is part of what captions
        # say ("on the left"), and a global pool would have to recover it from border effects.
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.out_dim = 4 * in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)  # (B, 4 * widths[-1])


_TORCHVISION = {"resnet18": resnet.resnet18, "resnet34": resnet.resnet34, "resnet50": resnet.resnet50}


def build_image_tower(name: str, pretrained_path: str | None = None) -> tuple[nn.Module, int]:
    """Returns (tower mapping images to features, feature dim).

    Args:
        name: tiny_resnet | resnet18 | resnet34 | resnet50.
        pretrained_path: a local torch state-dict file (e.g. torchvision's ImageNet weights saved
            to disk); None trains from scratch. Nothing is downloaded.

    Raises:
        ValueError: unknown name, or a pretrained path that does not exist or does not match.
    """
    if name == "tiny_resnet":
        tower: nn.Module = TinyResNet()
        dim = tower.out_dim
    elif name in _TORCHVISION:
        tower = _TORCHVISION[name](weights=None)
        dim = tower.fc.in_features
        tower.fc = nn.Identity()
    else:
        raise ValueError(f"model.image_tower={name!r}; allowed: tiny_resnet, {', '.join(_TORCHVISION)}")
    if pretrained_path is not None:
        if not os.path.isfile(pretrained_path):
            raise ValueError(f"model.image_weights={pretrained_path!r}: no such file")
        state = torch.load(pretrained_path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the classifier is replaced
        try:
            tower.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"model.image_weights={pretrained_path!r} does not fit {name}: {e}") from e
    return tower, dim
