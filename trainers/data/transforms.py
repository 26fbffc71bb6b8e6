"""Image decoding, cropping, views and normalisation; caption token deletion.

Shared by the Ray Data pipeline and plain loops.

Decoding keeps each image as a uint8 square (`square_pixels`, 4x fewer bytes through the object
store than float32); training crops and colour jitter run on whole batches in torch, wherever
the batch is (a Ray Data task, or the trainer when the decoded set is cached); `normalize`
turns pixels into CLIP-normalised floats on the trainer's device.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# CLIP's image statistics, as open_clip's OPENAI_DATASET_MEAN / _STD.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def decode_image(data: bytes) -> Image.Image:
    """Decodes encoded bytes to RGB, fully (a truncated file raises `OSError` here, not later)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def random_crop_boxes(n: int, width: int, height: int, scale: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """`n` random resized crop boxes (left, top, right, bottom), as torchvision's RandomResizedCrop.

    Area fraction uniform in `scale`, aspect ratio log-uniform in [3/4, 4/3]; ten tries per box
    (drawn together), then the centre square. Returns float32 (n, 4) in pixels.
    """
    area = width * height * rng.uniform(*scale, size=(n, 10))
    aspect = np.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3), size=(n, 10)))
    w, h = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.argmax(axis=1)  # the first try that fits (0 when none does)
    w, h = w[np.arange(n), first], h[np.arange(n), first]
    side = min(width, height)
    w, h = np.where(fits.any(axis=1), w, side), np.where(fits.any(axis=1), h, side)
    left = np.floor(rng.random(n) * (width - w + 1))
    top = np.floor(rng.random(n) * (height - h + 1))
    none_fit = ~fits.any(axis=1)
    left, top = np.where(none_fit, (width - side) // 2, left), np.where(none_fit, (height - side) // 2, top)
    return np.stack([left, top, left + w, top + h], axis=1).astype(np.float32)


def square_pixels(image: Image.Image, size: int) -> np.ndarray:
    """PIL image -> uint8 (3, size, size): the centre square, resized (bicubic).

    What a decoded item keeps: CLIP's evaluation transform (resize the short side, centre crop)
    and img2dataset's `center_crop` resize mode both give this square. Training crops are then
    drawn from it, in batches (`random_resized_crops`).
    """
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def random_resized_crops(
    images: torch.Tensor,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.8, 1.0),
    hflip: bool = False,
) -> torch.Tensor:
    """A random resized crop of each image, all in one bilinear `grid_sample`.

    Args:
        images: uint8 (B, 3, H, W).
        size: output side in pixels.
        rng: source of the boxes (and flips).
        scale: area range of the crop (`random_crop_boxes`).
        hflip: also flip half of the images left-right. Off by default: it contradicts captions
            that say "left"/"right", as the synthetic corpus' do.

    Returns:
        uint8 (B, 3, size, size).
    """
    b, _, height, width = images.shape
    boxes = torch.from_numpy(random_crop_boxes(b, width, height, scale, rng)).float()  # (B, 4)
    # Each output pixel centre maps into its box, in grid_sample's [-1, 1] coordinates (-1 and 1
    # are the image's outer edges). The map is axis-aligned, so the grid is built per axis:
    # cheaper than affine_grid's batched matmul by ~7 ms a 256-batch on the CPU here.
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # (S,) in (0, 1)
    xs = (boxes[:, 0:1] + centres * (boxes[:, 2:3] - boxes[:, 0:1])) * (2 / width) - 1  # (B, S)
    ys = (boxes[:, 1:2] + centres * (boxes[:, 3:4] - boxes[:, 1:2])) * (2 / height) - 1  # (B, S)
    if hflip:
        flipped = torch.from_numpy(rng.random(b) < 0.5)
        xs[flipped] = xs[flipped].flip(1)
    grid = torch.stack([xs[:, None, :].expand(b, size, size), ys[:, :, None].expand(b, size, size)], dim=-1)
    crops = F.grid_sample(images.float(), grid.to(images.device), mode="bilinear", padding_mode="border", align_corners=False)
    return crops.round_().clamp_(0, 255).to(torch.uint8)


def jitter_colours(images: torch.Tensor, rng: np.random.Generator, strength: float = 0.4) -> torch.Tensor:
    """Per-image brightness, contrast and saturation jitter, factors uniform in 1 +- strength.

    torchvision's ColorJitter formulas (blend with black, with the mean grey, with the greyscale
    image), in a fixed order, with a factor per image instead of one per call. Hue stays fixed:
    captions name colours, and a hue shift would turn a "red" object into another colour's.

    Args:
        images: uint8 (B, 3, H, W).

    Returns:
        uint8 (B, 3, H, W).
    """
    factors = torch.from_numpy(rng.uniform(1 - strength, 1 + strength, (3, images.shape[0], 1, 1, 1)).astype(np.float32))
    x = images.float() / 255.0
    x = (x * factors[0]).clamp(0, 1)  # brightness
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    x = (factors[1] * x + (1 - factors[1]) * mean).clamp(0, 1)  # contrast
    x = (factors[2] * x + (1 - factors[2]) * _grey(x)).clamp(0, 1)  # saturation
    return (x * 255).round_().to(torch.uint8)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, as torchvision's rgb_to_grayscale: (B, 3, H, W) -> (B, 1, H, W)."""
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 CLIP-normalised, on the images' device.

    (x / 255 - mean) / std as one fused x * scale + bias: four passes over a 256-batch of
    64 px images took 7 ms on the CPU here, one takes under 1 ms.
    """
    mean = torch.tensor(IMAGE_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=images.device).view(1, 3, 1, 1)
    return torch.addcmul(-mean / std, images.float(), 1.0 / (255.0 * std))


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
