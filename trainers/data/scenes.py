"""Scene vocabulary, sampling and captions of the synthetic captioned-scenes corpus.

A scene is one value per attribute (shape, colour, size, position, count, texture, background).
Every long caption names all seven attributes, so two scenes that differ in one attribute get
captions that differ in one phrase: in-batch hard negatives exist by construction, and
attribute clusters are real. The images are drawn by `render.py`.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink")
SIZES = ("small", "medium", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")
COUNTS = ("one", "two", "three")
TEXTURES = ("plain", "striped", "dotted", "checkered")
# No background shares a name with an object colour, so "red" always names the object.
BACKGROUNDS = ("black", "white", "gray", "brown")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "position": POSITIONS,
    "count": COUNTS,
    "texture": TEXTURES,
    "background": BACKGROUNDS,
}

_PLURAL = {"cross": "crosses"}
_POSITION_PHRASE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
_COUNT_WORD = {"one": "a single", "two": "two", "three": "three"}


@dataclass(frozen=True)
class Scene:
    """One value per attribute; field names match the keys of `ATTRIBUTES`."""

    shape: str
    colour: str
    size: str
    position: str
    count: str
    texture: str
    background: str

    def __post_init__(self) -> None:
        for name, value in self.as_dict().items():
            if value not in ATTRIBUTES[name]:
                raise ValueError(f"Scene.{name}={value!r}; allowed: {', '.join(ATTRIBUTES[name])}")

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def n_objects(self) -> int:
        return COUNTS.index(self.count) + 1

    @property
    def label(self) -> int:
        """Class id of the (colour, shape) pair: 48 classes, used by label-based objectives."""
        return COLOURS.index(self.colour) * len(SHAPES) + SHAPES.index(self.shape)

    def key(self) -> str:
        """Stable text key of the attribute tuple (used to split train / held-out)."""
        return "|".join(astuple(self))


LABEL_NAMES = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draws every attribute uniformly and independently."""
    return Scene(**{name: values[rng.integers(len(values))] for name, values in ATTRIBUTES.items()})


def _noun(scene: Scene) -> str:
    return scene.shape if scene.count == "one" else _PLURAL.get(scene.shape, scene.shape + "s")


def _shape_phrase(scene: Scene) -> str:
    return f"{_COUNT_WORD[scene.count]} {scene.size} {scene.texture} {scene.colour} {_noun(scene)}"


# Long captions: all seven attributes, in different orders and sentence shapes.
_LONG_TEMPLATES = (
    lambda s: f"{_shape_phrase(s)} {_POSITION_PHRASE[s.position]} on a {s.background} background",
    lambda s: f"a {s.background} picture with {_shape_phrase(s)} {_POSITION_PHRASE[s.position]}",
    lambda s: (
        f"{_POSITION_PHRASE[s.position]} of a {s.background} canvas there "
        f"{'is' if s.count == 'one' else 'are'} {_shape_phrase(s)}"
    ),
    lambda s: (
        f"{s.count} {s.colour} {_noun(s)} , {s.size} and {s.texture} , "
        f"{_POSITION_PHRASE[s.position]} , {s.background} background"
    ),
    lambda s: (
        f"an image of {_COUNT_WORD[s.count]} {s.texture} {_noun(s)} coloured {s.colour} , "
        f"{s.size} , placed {_POSITION_PHRASE[s.position]} over {s.background}"
    ),
)
# Short captions name only a few attributes, as alt-text often does.
_SHORT_TEMPLATES = (
    lambda s: f"{s.colour} {_noun(s)}",
    lambda s: f"{s.count} {s.texture} {_noun(s)} on {s.background}",
)
N_LONG_CAPTIONS = 3  # per scene; the remaining captions are the short ones


def canonical_caption(scene: Scene) -> str:
    """The first long template: the same sentence shape for every scene."""
    return _LONG_TEMPLATES[0](scene)


def captions_for(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Captions of one scene: the canonical one, two other long paraphrases, then the shorts.

    The canonical caption is always first, so that the `caption` column of two scenes that
    differ in one attribute differs in exactly that attribute's words.
    """
    others = rng.choice(np.arange(1, len(_LONG_TEMPLATES)), size=N_LONG_CAPTIONS - 1, replace=False)
    long = [canonical_caption(scene)] + [_LONG_TEMPLATES[i](scene) for i in sorted(others)]
    return long + [template(scene) for template in _SHORT_TEMPLATES]
