"""Image decoding and augmentation, shared by the Ray Data pipeline and plain loops."""

from __future__ import annotations

import io
from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2

# CLIP's image statistics, as open_clip's OPENAI_DATASET_MEAN / _STD.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def decode_image(data: bytes) -> Image.Image:
    """Decodes encoded bytes to RGB, fully (a truncated file raises `OSError` here, not later)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def image_transform(
    image_size: int,
    train: bool,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    hflip: bool = False,
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalised float32 tensor (3, image_size, image_size).

    Args:
        image_size: output side in pixels.
        train: random resized crop (and optional flip) if true; resize + centre crop if false.
        crop_scale: area range of the random resized crop.
        hflip: random horizontal flip. Off by default: it contradicts captions that say
            "left"/"right", as the synthetic corpus' do.
    """
    if train:
        steps: list[v2.Transform] = [v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True)]
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
    else:
        steps = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGE_MEAN, IMAGE_STD)]
    return v2.Compose(steps)
