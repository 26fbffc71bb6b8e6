"""Image decoding, cropping, views and normalisation; caption token deletion.

Shared by the Ray Data pipeline and plain loops.

Data tasks crop and resize with Pillow and ship uint8 pixels (4x fewer bytes through the object
store than float32); `normalize` turns them into CLIP-normalised floats on the trainer's device.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import ColorJitter

# CLIP's image statistics, as open_clip's OPENAI_DATASET_MEAN / _STD.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def decode_image(data: bytes) -> Image.Image:
    """Decodes encoded bytes to RGB, fully (a truncated file raises `OSError` here, not later)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def random_crop_box(
    width: int, height: int, scale: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A random resized crop's (left, top, right, bottom), as torchvision's RandomResizedCrop.

    Area fraction uniform in `scale`, aspect ratio log-uniform in [3/4, 4/3]; ten tries, then
    the centre crop. Drawn with numpy: torchvision's `get_params` costs about a third of a
    training crop in small tensor ops.
    """
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(width - w + 1)), int(rng.integers(height - h + 1))
            return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def crop_image(
    image: Image.Image,
    size: int,
    train: bool,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    hflip: bool = False,
    rng: np.random.Generator | None = None,
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
        rng: source of the training crop's randomness (default: fresh entropy).
    """
    if train:
        rng = rng or np.random.default_rng()
        box = random_crop_box(image.width, image.height, crop_scale, rng)
        image = image.resize((size, size), Image.BILINEAR, box=box)
        if hflip and rng.random() < 0.5:
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


# Paper C's second image view: stronger crop, colour jitter. Hue stays fixed: captions name
# colours, and a hue shift would turn a "red" object into another colour's.
_VIEW_JITTER = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0)


def image_view(image: Image.Image, size: int, hflip: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
    """A second augmented view for L_II: colour jitter, then a random resized crop (area 0.5-1)."""
    return crop_image(_VIEW_JITTER(image), size, train=True, crop_scale=(0.5, 1.0), hflip=hflip, rng=rng)


def drop_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletes each non-special token with probability p and left-packs what remains.

    The first token ([CLS]) and the last real token ([SEP]) are always kept.

    Returns:
        (input_ids, attention_mask) of the same shape, padded with the original pad id (0).
    """
    lengths = attention_mask.sum(1)  # (B,)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    special = (positions == 0) | (positions == (lengths - 1).unsqueeze(1))
    keep = attention_mask.bool() & (special | (torch.rand(input_ids.shape, generator=generator) >= p))
    # Stable sort puts kept tokens first, in order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    new_mask = torch.gather(keep, 1, order)
    new_ids = torch.gather(input_ids, 1, order).masked_fill(~new_mask, 0)
    return new_ids, new_mask.to(attention_mask.dtype)
