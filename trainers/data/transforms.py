"""Image decoding, cropping and normalisation, shared by the Ray Data pipeline and plain loops.

Data tasks crop and resize with Pillow and ship uint8 pixels (4x fewer bytes through the object
store than float32); `normalize` turns them into CLIP-normalised floats on the trainer's device.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop

# CLIP's image statistics, as open_clip's OPENAI_DATASET_MEAN / _STD.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def decode_image(data: bytes) -> Image.Image:
    """Decodes encoded bytes to RGB, fully (a truncated file raises `OSError` here, not later)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def crop_image(
    image: Image.Image,
    size: int,
    train: bool,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    hflip: bool = False,
) -> np.ndarray:
    """PIL image -> uint8 array (3, size, size).

    Args:
        image: RGB image.
        size: output side in pixels.
        train: random resized crop (area in `crop_scale`, aspect 3/4..4/3) and optional flip;
            otherwise resize the short side to `size` and take the centre crop (as CLIP's eval).
        crop_scale: area range of the random resized crop.
        hflip: random horizontal flip in training. Off by default: it contradicts captions that
            say "left"/"right", as the synthetic corpus' do.
    """
    if train:
        top, left, h, w = RandomResizedCrop.get_params(image, list(crop_scale), [3 / 4, 4 / 3])
        image = image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
        if hflip and torch.rand(()) < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
    else:
        scale = size / min(image.size)
        w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((w, h), Image.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 CLIP-normalised, on the images' device."""
    mean = torch.tensor(IMAGE_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std
