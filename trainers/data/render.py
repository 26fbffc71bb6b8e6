"""Draws a `Scene` with Pillow: textured shapes at a position on a plain background.

All randomness (small jitter of colours, places and sizes, so no two images are identical) comes
from the generator passed in, so a scene's pixels depend only on the corpus seed and its index.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from .scenes import Scene

_RGB = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 215, 30),
    "purple": (140, 40, 180),
    "orange": (245, 135, 20),
    "cyan": (30, 210, 215),
    "pink": (245, 130, 190),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "gray": (125, 125, 125),
    "brown": (110, 70, 35),
}
# Object radius as a fraction of the image side.
_RADIUS = {"small": 0.08, "medium": 0.12, "large": 0.14}
# Centre of the group of objects, as fractions of the image side (x, y).
_ANCHOR = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "center": (0.5, 0.5),
}


def _jitter_rgb(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> np.ndarray:
    return np.clip(np.asarray(rgb) + rng.integers(-amount, amount + 1, size=3), 0, 255)


def _texture(size: int, colour: np.ndarray, texture: str, period: int) -> np.ndarray:
    """(size, size, 3) uint8 fill: the colour, with darker stripes, dots or checks."""
    yy, xx = np.mgrid[0:size, 0:size]
    if texture == "plain":
        dark = np.zeros((size, size), dtype=bool)
    elif texture == "striped":
        dark = ((xx + yy) // period) % 2 == 1
    elif texture == "dotted":
        half = period / 2
        dark = ((xx % period - half) ** 2 + (yy % period - half) ** 2) < (period / 3.2) ** 2
    elif texture == "checkered":
        dark = ((xx // period) + (yy // period)) % 2 == 1
    else:
        raise ValueError(f"texture={texture!r} has no renderer")
    fill = np.empty((size, size, 3), dtype=np.uint8)
    fill[:] = colour
    fill[dark] = (colour * 0.4).astype(np.uint8)
    return fill


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape of circumradius r centred at (cx, cy)."""
    if shape == "square":
        k = r / math.sqrt(2)
        return [(cx - k, cy - k), (cx + k, cy - k), (cx + k, cy + k), (cx - k, cy + k)]
    if shape == "triangle":
        angles = [-90, 30, 150]
        return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in angles]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)]
    if shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else 0.45 * r
            angle = math.radians(-90 + 36 * i)
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "cross":
        w = 0.35 * r
        return [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w),
            (cx + r, cy + w), (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r),
            (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w),
        ]  # fmt: skip
    raise ValueError(f"shape={shape!r} has no renderer")


def _object_centres(scene: Scene, r: float, size: int) -> list[tuple[float, float]]:
    """Centres of the scene's objects: a row (or column, on the left/right) around the anchor."""
    ax, ay = (a * size for a in _ANCHOR[scene.position])
    n = scene.n_objects
    gap = 2 * r + max(3.0, 0.3 * r)  # >= 3 px between neighbours, so objects can be counted
    offsets = [(i - (n - 1) / 2) * gap for i in range(n)]
    if scene.position in ("left", "right"):
        return [(ax, ay + o) for o in offsets]
    return [(ax + o, ay) for o in offsets]


def render_scene(scene: Scene, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Draws the scene as an RGB image of side `size`."""
    background = _jitter_rgb(_RGB[scene.background], rng, 10)
    colour = _jitter_rgb(_RGB[scene.colour], rng, 12)
    r = _RADIUS[scene.size] * size * rng.uniform(0.92, 1.08)
    shift = rng.uniform(-0.03, 0.03, size=2) * size
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for cx, cy in _object_centres(scene, r, size):
        cx, cy = cx + shift[0], cy + shift[1]
        if scene.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        else:
            draw.polygon(_polygon(scene.shape, cx, cy, r), fill=255)
    period = max(2, round(size / 16))
    fill = Image.fromarray(_texture(size, colour, scene.texture, period))
    canvas = Image.new("RGB", (size, size), tuple(int(c) for c in background))
    canvas.paste(fill, (0, 0), mask)
    return canvas


def encode_png(image: Image.Image) -> bytes:
    """Lossless, deterministic encoding (same pixels, same bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
