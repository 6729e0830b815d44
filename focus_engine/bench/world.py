"""A procedural fine-grained VQA world in the style of V*Bench.

Each scene is a large image (1-4K px per side) with a muted procedural
background and a few dozen small objects: plain coloured *shapes* and
*signs* (a coloured plate on a short post, with an uppercase letter on it).
A question asks about one small target (or, for spatial questions, two).
The target's colour is unique in the scene, so a downsampled global view
(224-336 px) shows *where* it is, but its letter or shape is a few pixels
there and needs a crop of a few object sizes to be read: the situation
visual cropping is for.

Everything is deterministic from ``(seed, index)``: ``generate_item(spec,
seed, index)`` always renders the same item, and items of other seeds or
indices are drawn from independent random streams.
``make_synthetic`` writes a folder in V*Bench's own layout, which
``focus_engine.bench.datasets.load_dataset`` reads back.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..boxes import Box, square_window_about_centre
from ..errors import FocusConfigError, FocusInputError

GENERATOR_VERSION = "focus-world-v1"
"""Bumped whenever the same (spec, seed, index) would render differently."""

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
"""The world's object colours by name (the test models' planted colour words too)."""
DEFAULT_SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
DEFAULT_LABELS = ("A", "E", "H", "K", "M", "R", "T", "X")
BACKGROUNDS = ("noise", "gradient", "stripes", "tiles", "blobs")
SUBTYPES = ("label", "shape", "colour", "spatial")

QUESTION_TEMPLATES = {
    "label": "Which letter is on the {colour} sign?",
    "shape": "What is the shape of the {colour} object?",
    "colour": "What is the colour of the {shape}?",
    "spatial": "Is the {colour1} {shape1} to the left or to the right of the {colour2} {shape2}?",
}
"""The world's questions; ``{colour}`` etc. are vocabulary words."""
TARGET_TEMPLATES = {
    "label": ("{colour} sign",),
    "shape": ("{colour} object",),
    "colour": ("{shape}",),
    "spatial": ("{colour1} {shape1}", "{colour2} {shape2}"),
}
"""The target phrases FOCUS should extract for each question subtype."""
CATEGORY_OF_SUBTYPE = {
    "label": "direct_attributes",
    "shape": "direct_attributes",
    "colour": "direct_attributes",
    "spatial": "relative_position",
}
"""V*Bench's two question folders."""
SPATIAL_OPTIONS = ("left", "right")
"""Spatial questions have two options, like V*Bench's relative_position."""

SIGN_HEIGHT_RATIO = 1.3
"""A sign's box is its plate (side = object size) plus a post below it."""
LETTER_HEIGHT_RATIO = 0.62
"""Letter cap height as a fraction of the sign plate's side."""
POST_COLOUR: RGB = (104, 88, 72)
SUPERSAMPLE = 4
"""Objects are drawn at this scale and reduced: smooth edges, crisp letters."""


# --------------------------------------------------------------------- spec
@dataclass
class WorldSpec:
    """Vocabulary and generator settings of the world (JSON round-trips)."""

    colours: dict[str, RGB] = field(default_factory=lambda: dict(COLOURS))
    """Object colours by name (the embedded demo model was trained on these)."""
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    labels: tuple[str, ...] = DEFAULT_LABELS
    scene_long_side: tuple[int, int] = (1200, 2600)
    """Range of the scene's long side in pixels (V*Bench: ~2246x1582)."""
    aspect: tuple[float, float] = (0.55, 1.0)
    """Range of short side / long side."""
    portrait_fraction: float = 0.25
    """Share of scenes taller than wide."""
    object_fraction: tuple[float, float] = (0.02, 0.035)
    """Object size (shape side, sign plate side) as a fraction of the long side:
    in a 336-px global view a sign's letter is then 4-7 px tall (unreadable),
    in a crop of 4-8 object sizes resized to 336 px, 20-40 px."""
    distractors: tuple[int, int] = (12, 40)
    """Range of the number of non-target objects."""
    sign_fraction: float = 0.35
    """Share of distractors that are signs (the rest are plain shapes)."""
    backgrounds: tuple[str, ...] = BACKGROUNDS
    question_mix: dict[str, float] = field(
        default_factory=lambda: {"label": 0.3, "shape": 0.3, "colour": 0.0, "spatial": 0.4}
    )
    """Relative weights of the question subtypes (V*Bench: ~60 % attribute, ~40 % spatial).
    ``colour`` questions are off by default: they refer to an object by its
    shape, which the downsampled global view does not show, so no map made from
    that view can find it (the world keeps the referring attribute visible and
    the asked one small)."""
    gap: float = 0.5
    """Free space kept around every object, in object sizes."""
    edge_margin: float = 0.02
    """Objects keep this fraction of the long side away from the border."""
    spatial_min_dx: float = 0.15
    """Spatial pairs are at least this fraction of the width apart horizontally..."""
    spatial_max_dy_ratio: float = 0.5
    """...and their vertical offset is at most this times the horizontal one."""
    n_options: int = 4
    """Options of attribute questions (spatial ones always have 2)."""
    image_format: str = "jpg"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        self.colours = {str(k): tuple(int(c) for c in v) for k, v in dict(self.colours).items()}
        for name in ("shapes", "labels", "backgrounds"):
            setattr(self, name, tuple(str(v) for v in getattr(self, name)))
        for name in ("scene_long_side", "distractors"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("aspect", "object_fraction"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        self.question_mix = {str(k): float(v) for k, v in dict(self.question_mix).items()}
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> FocusConfigError:
            return FocusConfigError(f"WorldSpec.{name}={getattr(self, name)!r}: {why}")

        if len(self.colours) < self.n_options + 2:
            raise bad("colours", f"needs at least n_options + 2 = {self.n_options + 2} colours")
        for rgb in self.colours.values():
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise bad("colours", "every colour must be an (r, g, b) triple of 0..255")
        unknown = [s for s in self.shapes if s not in SHAPE_DRAWERS]
        if unknown:
            raise bad("shapes", f"cannot draw {unknown}; choose from {', '.join(SHAPE_DRAWERS)}")
        if len(self.shapes) < self.n_options + 1:
            raise bad("shapes", f"needs at least n_options + 1 = {self.n_options + 1} shapes")
        if len(self.labels) < self.n_options or not all(len(v) == 1 and v.isupper() for v in self.labels):
            raise bad("labels", f"needs at least {self.n_options} single uppercase letters")
        for name in ("shapes", "labels"):
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                raise bad(name, "has duplicates")
        unknown = [b for b in self.backgrounds if b not in BACKGROUND_MAKERS]
        if unknown or not self.backgrounds:
            raise bad("backgrounds", f"choose one or more of {', '.join(BACKGROUND_MAKERS)}")
        low, high = self.scene_long_side
        if not 256 <= low <= high <= 8192:
            raise bad("scene_long_side", "needs 256 <= min <= max <= 8192 pixels")
        if not 0.3 <= self.aspect[0] <= self.aspect[1] <= 1.0:
            raise bad("aspect", "needs 0.3 <= min <= max <= 1 (short side / long side)")
        if not 0.005 <= self.object_fraction[0] <= self.object_fraction[1] <= 0.2:
            raise bad("object_fraction", "needs 0.005 <= min <= max <= 0.2 of the long side")
        if not 0 <= self.distractors[0] <= self.distractors[1] <= 200:
            raise bad("distractors", "needs 0 <= min <= max <= 200")
        if any(k not in SUBTYPES for k in self.question_mix) or not any(v > 0 for v in self.question_mix.values()):
            raise bad("question_mix", f"weights of {', '.join(SUBTYPES)}, at least one positive")
        if any(v < 0 for v in self.question_mix.values()):
            raise bad("question_mix", "weights must be >= 0")
        for name in ("portrait_fraction", "sign_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if not 0.0 <= self.gap <= 3.0:
            raise bad("gap", "must be in [0, 3] object sizes")
        if not 0.0 <= self.edge_margin <= 0.2:
            raise bad("edge_margin", "must be in [0, 0.2]")
        if not 0.0 < self.spatial_min_dx <= 0.6:
            raise bad("spatial_min_dx", "must be in (0, 0.6]")
        if not 0.0 <= self.spatial_max_dy_ratio <= 1.0:
            raise bad("spatial_max_dy_ratio", "must be in [0, 1]")
        if self.n_options < 2:
            raise bad("n_options", "must be at least 2")
        if self.image_format not in ("jpg", "png"):
            raise bad("image_format", "must be 'jpg' or 'png'")
        if not 50 <= self.jpeg_quality <= 100:
            raise bad("jpeg_quality", "must be in [50, 100]")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["colours"] = {k: list(v) for k, v in self.colours.items()}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def to_json(self) -> str:
        return _json_lists_inline(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WorldSpec":
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise FocusInputError(f"unknown WorldSpec field(s) {unknown}; remove them or fix their spelling")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> "WorldSpec":
        """From JSON text (or an already parsed dict)."""
        if isinstance(text, dict):
            return cls.from_dict(text)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FocusInputError(f"the world spec is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise FocusInputError("the world spec must be a JSON object of WorldSpec fields")
        return cls.from_dict(data)

    def hash(self) -> str:
        """A short content hash (what the manifest records)."""
        canonical = json.dumps({"version": GENERATOR_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _json_lists_inline(value: Any, depth: int = 0) -> str:
    """JSON with objects indented and every list on one line (a spec reads
    better with ``"red": [220, 30, 30]`` than with five lines per colour)."""
    if isinstance(value, dict) and value:
        pad = " " * (depth + 1)
        body = ",\n".join(f"{pad}{json.dumps(k)}: {_json_lists_inline(v, depth + 1)}" for k, v in value.items())
        return "{\n" + body + "\n" + " " * depth + "}"
    return json.dumps(value)


# ------------------------------------------------------------------- items
@dataclass
class SceneObject:
    """One object of a scene; ``box`` in pixels, exclusive right/bottom."""

    kind: str  # "shape" | "sign"
    colour: str
    shape: str | None = None
    label: str | None = None
    box: Box = (0, 0, 0, 0)

    @property
    def size(self) -> int:
        """The object size: shape side or sign plate side."""
        return self.box[2] - self.box[0]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "colour": self.colour, "shape": self.shape, "label": self.label,
                "box": list(self.box)}


@dataclass
class WorldItem:
    """One generated question with its scene."""

    name: str
    image: Image.Image
    question: str
    options: list[str]
    """Correct option first (V*Bench convention); shuffle before asking."""
    answer: str
    category: str  # "direct_attributes" | "relative_position"
    subtype: str  # "label" | "shape" | "colour" | "spatial"
    target_names: list[str]
    target_boxes: list[Box]
    objects: list[SceneObject]
    background: str
    seed: int
    index: int

    def to_vstar_json(self) -> dict[str, Any]:
        """The V*Bench annotation (plus the world's own fields, which V*
        readers ignore)."""
        return {
            "target_object": list(self.target_names),
            "bbox": [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in self.target_boxes],
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "category": self.category,
            "subtype": self.subtype,
            "world": {
                "version": GENERATOR_VERSION,
                "seed": self.seed,
                "index": self.index,
                "image_size": list(self.image.size),
                "background": self.background,
                "objects": [o.to_json() for o in self.objects],
            },
        }


# ---------------------------------------------------------------- drawing
def _draw_circle(draw: ImageDraw.ImageDraw, s: int, fill: RGB) -> None:
    draw.ellipse((0, 0, s - 1, s - 1), fill=fill)


def _draw_square(draw: ImageDraw.ImageDraw, s: int, fill: RGB) -> None:
    inset = round(s * 0.06)  # a square's corners stick out of a circle of the same side
    draw.rectangle((inset, inset, s - 1 - inset, s - 1 - inset), fill=fill)


def _draw_triangle(draw: ImageDraw.ImageDraw, s: int, fill: RGB) -> None:
    draw.polygon([(s / 2, 0), (s - 1, s - 1), (0, s - 1)], fill=fill)


def _draw_star(draw: ImageDraw.ImageDraw, s: int, fill: RGB) -> None:
    centre, outer = (s - 1) / 2, (s - 1) / 2
    points = []
    for k in range(10):
        radius = outer if k % 2 == 0 else outer * 0.42
        angle = math.pi / 2 + k * math.pi / 5
        points.append((centre + radius * math.cos(angle), centre - radius * math.sin(angle) + s * 0.04))
    draw.polygon(points, fill=fill)


def _draw_diamond(draw: ImageDraw.ImageDraw, s: int, fill: RGB) -> None:
    m = (s - 1) / 2
    draw.polygon([(m, 0), (s - 1, m), (m, s - 1), (0, m)], fill=fill)


def _draw_cross(draw: ImageDraw.ImageDraw, s: int, fill: RGB) -> None:
    arm = s * 0.32
    low, high = (s - arm) / 2, (s + arm) / 2
    draw.rectangle((low, 0, high, s - 1), fill=fill)
    draw.rectangle((0, low, s - 1, high), fill=fill)


SHAPE_DRAWERS = {
    "circle": _draw_circle,
    "square": _draw_square,
    "triangle": _draw_triangle,
    "star": _draw_star,
    "diamond": _draw_diamond,
    "cross": _draw_cross,
}
"""Shape name -> drawer of that shape filling an ``s`` x ``s`` canvas."""


@functools.lru_cache(maxsize=16)
def scalable_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A scalable font (Pillow >= 10.1 ships one); else the small bitmap
    default, whose glyphs ``letter_mask`` scales up."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError, ImportError):  # old Pillow / no FreeType
        return ImageFont.load_default()


@functools.lru_cache(maxsize=512)
def letter_mask(letter: str, height: int) -> Image.Image:
    """An ``L`` mask of ``letter`` scaled so its ink is ``height`` pixels tall."""
    font = scalable_font(max(height * 2, 16))
    canvas = Image.new("L", (max(height * 4, 64), max(height * 4, 64)), 0)
    ImageDraw.Draw(canvas).text((canvas.width // 4, canvas.height // 8), letter, fill=255, font=font)
    ink = canvas.getbbox()
    if ink is None:
        raise FocusInputError(f"the font has no glyph for {letter!r}; use plain uppercase letters as labels")
    glyph = canvas.crop(ink)
    width = max(1, round(glyph.width * height / glyph.height))
    return glyph.resize((width, height), Image.Resampling.LANCZOS)


def _contrast_colour(rgb: RGB) -> RGB:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (15, 15, 15) if luminance > 140 else (245, 245, 245)


def _object_patch(obj: SceneObject, rgb: RGB) -> tuple[Image.Image, Image.Image]:
    """(RGB patch, alpha mask) of ``obj`` at its box size, drawn supersampled."""
    x0, y0, x1, y1 = obj.box
    w, h = (x1 - x0) * SUPERSAMPLE, (y1 - y0) * SUPERSAMPLE
    patch = Image.new("RGB", (w, h), rgb)
    alpha = Image.new("L", (w, h), 0)
    mask_draw = ImageDraw.Draw(alpha)
    if obj.kind == "shape":
        SHAPE_DRAWERS[obj.shape or "square"](mask_draw, w, 255)  # type: ignore[arg-type]
    else:
        plate = w
        post_w = max(2, round(plate * 0.14))
        ImageDraw.Draw(patch).rectangle(((w - post_w) // 2, plate, (w + post_w) // 2, h), fill=POST_COLOUR)
        mask_draw.rectangle(((w - post_w) // 2, plate // 2, (w + post_w) // 2, h - 1), fill=255)
        mask_draw.rounded_rectangle((0, 0, plate - 1, plate - 1), radius=plate // 6, fill=255)
        glyph = letter_mask(obj.label or "A", max(4, round(plate * LETTER_HEIGHT_RATIO)))
        at = ((plate - glyph.width) // 2, (plate - glyph.height) // 2)
        patch.paste(_contrast_colour(rgb), (*at, at[0] + glyph.width, at[1] + glyph.height), glyph)
    size = (x1 - x0, y1 - y0)
    return patch.resize(size, Image.Resampling.LANCZOS), alpha.resize(size, Image.Resampling.LANCZOS)


def object_mask(obj: SceneObject) -> np.ndarray:
    """Where the renderer paints ``obj``: bool ``[h, w]`` at its box's size
    (the drawn alpha at half or more; a sign's plate and post)."""
    _, alpha = _object_patch(obj, COLOURS["white"])
    return np.asarray(alpha) >= 128


def true_mask(world: dict[str, Any], boxes: Sequence[Sequence[int]], size: tuple[int, int]) -> np.ndarray | None:
    """The union of the true masks of the objects at ``boxes`` in a scene of
    ``size`` (width, height), from an annotation's ``world`` field
    (``WorldItem.to_vstar_json``): bool ``[H, W]``; None when a box is no
    object's box there, or the entry is not one the renderer draws (not a
    world scene, or an edited one): the question is then not scored."""
    width, height = size
    try:
        listed = [e for e in world.get("objects") or [] if isinstance(e, dict) and isinstance(e.get("box"), list)]
        objects = {tuple(int(v) for v in entry["box"]): entry for entry in listed if len(entry["box"]) == 4}
        mask = np.zeros((height, width), dtype=bool)
        for box in boxes:
            entry = objects.get(tuple(int(v) for v in box))
            if entry is None or (entry.get("kind") == "shape" and entry.get("shape") not in SHAPE_DRAWERS):
                return None
            obj = SceneObject(kind=str(entry.get("kind", "shape")), colour=str(entry.get("colour", "white")),
                              shape=entry.get("shape"), label=entry.get("label"), box=tuple(int(v) for v in box))
            x0, y0, x1, y1 = obj.box
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                return None
            mask[y0:y1, x0:x1] |= object_mask(obj)
    except (TypeError, ValueError, FocusInputError):  # a box or label the renderer never wrote
        return None
    return mask


def render_objects(image: Image.Image, objects: Sequence[SceneObject], colours: dict[str, RGB]) -> None:
    """Draw ``objects`` onto ``image`` in place."""
    for obj in objects:
        patch, alpha = _object_patch(obj, colours[obj.colour])
        image.paste(patch, obj.box[:2], alpha)


# -------------------------------------------------------------- backgrounds
def _muted_colour(rng: np.random.Generator, avoid: Sequence[RGB], min_distance: float = 70.0) -> np.ndarray:
    """A low-saturation mid-tone colour at least ``min_distance`` (RGB) from
    every object colour, so objects stay distinct on it."""
    for _ in range(200):
        hue, sat, val = rng.random(), rng.uniform(0.05, 0.25), rng.uniform(0.40, 0.62)
        rgb = np.array(_hsv_to_rgb(hue, sat, val)) * 255.0
        if min(np.linalg.norm(rgb - np.array(c)) for c in avoid) >= min_distance:
            return rgb
    return np.array([128.0, 128.0, 128.0])


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _upscale(small: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float HxWx3 array resized bilinearly to ``size`` (w, h)."""
    channels = [
        np.asarray(Image.fromarray(small[:, :, c].astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
        for c in range(3)
    ]
    return np.stack(channels, axis=2)


def _coords(size: tuple[int, int], scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x as a row ``[1, w]`` and y as a column ``[h, 1]`` (every
    ``scale``-th pixel): they broadcast to the grid without materialising it."""
    w, h = size
    xs = np.arange(0, w, scale, dtype=np.float32)[None, :]
    ys = np.arange(0, h, scale, dtype=np.float32)[:, None]
    return xs, ys


def _bg_noise(rng: np.random.Generator, size: tuple[int, int], avoid: Sequence[RGB]) -> np.ndarray:
    base = _muted_colour(rng, avoid)
    small = np.broadcast_to(base, (8, 8, 3)) + rng.normal(0, 10, (8, 8, 3))  # slow, soft variation
    return _upscale(small, size)


def _bg_gradient(rng: np.random.Generator, size: tuple[int, int], avoid: Sequence[RGB]) -> np.ndarray:
    a, b = _muted_colour(rng, avoid), _muted_colour(rng, avoid)
    xs, ys = _coords(size, 16)
    angle = rng.uniform(0, 2 * math.pi)
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = ((t - t.min()) / max(float(np.ptp(t)), 1.0))[:, :, None]
    return _upscale(a * (1 - t) + b * t, size)


def _bg_stripes(rng: np.random.Generator, size: tuple[int, int], avoid: Sequence[RGB]) -> np.ndarray:
    a, b = _muted_colour(rng, avoid), _muted_colour(rng, avoid)
    band = max(size) * rng.uniform(0.04, 0.10)
    angle = math.radians(float(rng.choice([0, 90, 45, -45])))
    xs, ys = _coords(size)
    odd = ((xs * math.cos(angle) + ys * math.sin(angle)) // band % 2).astype(bool)[:, :, None]
    return np.where(odd, a, b)


def _bg_tiles(rng: np.random.Generator, size: tuple[int, int], avoid: Sequence[RGB]) -> np.ndarray:
    a, b = _muted_colour(rng, avoid), _muted_colour(rng, avoid)
    tile = max(size) * rng.uniform(0.05, 0.12)
    line = max(1.0, tile * 0.04)
    xs, ys = _coords(size)
    checker = ((xs // tile + ys // tile) % 2).astype(bool)[:, :, None]
    grout = ((xs % tile < line) | (ys % tile < line))[:, :, None]
    return np.where(grout, (a + b) * 0.4, np.where(checker, a, b))


def _bg_blobs(rng: np.random.Generator, size: tuple[int, int], avoid: Sequence[RGB]) -> np.ndarray:
    xs, ys = _coords(size, 16)
    out = np.broadcast_to(_muted_colour(rng, avoid), (ys.shape[0], xs.shape[1], 3)).copy()
    for _ in range(int(rng.integers(4, 9))):
        cx, cy = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        radius = max(size) * rng.uniform(0.08, 0.25)
        weight = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))[:, :, None]
        out = out * (1 - weight) + _muted_colour(rng, avoid) * weight
    return _upscale(out, size)


BACKGROUND_MAKERS = {
    "noise": _bg_noise,
    "gradient": _bg_gradient,
    "stripes": _bg_stripes,
    "tiles": _bg_tiles,
    "blobs": _bg_blobs,
}


def render_background(kind: str, rng: np.random.Generator, size: tuple[int, int], avoid: Sequence[RGB]) -> Image.Image:
    """A muted procedural background of ``size`` with fine pixel noise."""
    base = BACKGROUND_MAKERS[kind](rng, size, avoid)
    grain = rng.integers(-6, 7, size=(size[1], size[0], 1), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(base, np.float32) + grain, 0, 255).astype(np.uint8), mode="RGB")


# --------------------------------------------------------------- generation
@dataclass
class _Question:
    subtype: str
    targets: list[SceneObject]
    options: list[str]  # correct first
    fields: dict[str, str]
    unique_colours: set[str] = field(default_factory=set)
    """Colours no other object may have."""
    unique_shapes: set[str] = field(default_factory=set)
    """Shapes no other plain shape may have."""
    shown: list[tuple[str, str]] = field(default_factory=list)
    """(attribute, value) pairs distractors must show: every option appears
    somewhere in the scene, so presence does not give the answer away."""
    spatial_answer: str | None = None


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of item ``index`` of a set generated with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index), 0x5EED]))


def _pick(rng: np.random.Generator, values: Sequence[str], exclude: set[str] = frozenset(), k: int = 1) -> list[str]:
    pool = [v for v in values if v not in exclude]
    return [pool[i] for i in rng.permutation(len(pool))[:k]]


def _plan_question(spec: WorldSpec, rng: np.random.Generator) -> _Question:
    names = [s for s in SUBTYPES if spec.question_mix.get(s, 0) > 0]
    weights = np.array([spec.question_mix[s] for s in names])
    subtype = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    colours, wrong_n = list(spec.colours), spec.n_options - 1
    if subtype == "label":
        colour, letter = _pick(rng, colours)[0], _pick(rng, spec.labels)[0]
        options = [letter, *_pick(rng, spec.labels, {letter}, wrong_n)]
        return _Question(subtype, [SceneObject("sign", colour, label=letter)], options, {"colour": colour},
                         unique_colours={colour}, shown=[("label", v) for v in options])
    if subtype == "shape":
        colour, shape = _pick(rng, colours)[0], _pick(rng, spec.shapes)[0]
        options = [shape, *_pick(rng, spec.shapes, {shape}, wrong_n)]
        return _Question(subtype, [SceneObject("shape", colour, shape=shape)], options, {"colour": colour},
                         unique_colours={colour}, shown=[("shape", v) for v in options])
    if subtype == "colour":
        colour, shape = _pick(rng, colours)[0], _pick(rng, spec.shapes)[0]
        options = [colour, *_pick(rng, colours, {colour}, wrong_n)]
        return _Question(subtype, [SceneObject("shape", colour, shape=shape)], options, {"shape": shape},
                         unique_shapes={shape}, shown=[("colour", v) for v in options])
    c1, c2 = _pick(rng, colours, k=2)
    s1, s2 = _pick(rng, spec.shapes)[0], _pick(rng, spec.shapes)[0]
    answer = SPATIAL_OPTIONS[int(rng.integers(2))]
    targets = [SceneObject("shape", c1, shape=s1), SceneObject("shape", c2, shape=s2)]
    return _Question(subtype, targets, [answer, *[o for o in SPATIAL_OPTIONS if o != answer]],
                     {"colour1": c1, "shape1": s1, "colour2": c2, "shape2": s2}, unique_colours={c1, c2},
                     spatial_answer=answer)


def _plan_distractors(spec: WorldSpec, rng: np.random.Generator, question: _Question) -> list[SceneObject]:
    """Distractors: first the ones showing every option value, then the rest
    cycling through the allowed vocabulary (so it is all on display)."""
    colours = [c for c in spec.colours if c not in question.unique_colours]
    shapes = [s for s in spec.shapes if s not in question.unique_shapes]
    cycle = {
        "colour": [colours[i] for i in rng.permutation(len(colours))],
        "shape": [shapes[i] for i in rng.permutation(len(shapes))],
        "label": [spec.labels[i] for i in rng.permutation(len(spec.labels))],
    }

    def next_value(attribute: str, count: int) -> str:
        values = cycle[attribute]
        return values[count % len(values)]

    n = max(int(rng.integers(spec.distractors[0], spec.distractors[1] + 1)), len(question.shown))
    out: list[SceneObject] = []
    for i in range(n):
        attribute, value = question.shown[i] if i < len(question.shown) else ("", "")
        if attribute == "label":
            kind = "sign"
        elif attribute == "shape":
            kind = "shape"
        else:
            kind = "sign" if rng.random() < spec.sign_fraction else "shape"
        colour = value if attribute == "colour" else next_value("colour", i)
        if kind == "sign":
            out.append(SceneObject("sign", colour, label=value if attribute == "label" else next_value("label", i)))
        else:
            out.append(SceneObject("shape", colour, shape=value if attribute == "shape" else next_value("shape", i)))
    return out


def _scene_size(spec: WorldSpec, rng: np.random.Generator) -> tuple[int, int]:
    long_side = int(rng.integers(spec.scene_long_side[0], spec.scene_long_side[1] + 1))
    short_side = int(round(long_side * rng.uniform(*spec.aspect)))
    return (short_side, long_side) if rng.random() < spec.portrait_fraction else (long_side, short_side)


def _object_extent(obj: SceneObject, size: int) -> tuple[int, int]:
    return (size, round(size * SIGN_HEIGHT_RATIO)) if obj.kind == "sign" else (size, size)


class _Placer:
    """Rejection sampling of object positions with free space around each."""

    def __init__(self, spec: WorldSpec, scene: tuple[int, int], rng: np.random.Generator) -> None:
        self.spec, self.scene, self.rng = spec, scene, rng
        self.margin = round(spec.edge_margin * max(scene))
        self.boxes: list[Box] = []

    def size(self) -> int:
        return max(6, round(self.rng.uniform(*self.spec.object_fraction) * max(self.scene)))

    def free(self, box: Box) -> bool:
        pad = self.spec.gap * max(box[2] - box[0], box[3] - box[1])
        x0, y0, x1, y1 = box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad
        return all(x0 >= b[2] or x1 <= b[0] or y0 >= b[3] or y1 <= b[1] for b in self.boxes)

    def candidate(self, extent: tuple[int, int]) -> Box | None:
        w, h = extent
        high_x, high_y = self.scene[0] - self.margin - w, self.scene[1] - self.margin - h
        if high_x < self.margin or high_y < self.margin:
            return None
        x, y = int(self.rng.integers(self.margin, high_x + 1)), int(self.rng.integers(self.margin, high_y + 1))
        return x, y, x + w, y + h

    def place(self, obj: SceneObject, accept: Callable[[Box], bool] = lambda box: True, tries: int = 400) -> bool:
        """Give ``obj`` a free box that ``accept`` approves; False if none was found."""
        extent = _object_extent(obj, self.size())
        for _ in range(tries):
            box = self.candidate(extent)
            if box is not None and self.free(box) and accept(box):
                obj.box = box
                self.boxes.append(box)
                return True
        return False


def spatial_ok(spec: WorldSpec, scene: tuple[int, int], first: Box, second: Box, answer: str) -> bool:
    """``first`` is clearly ``answer`` (left/right) of ``second``."""
    dx = (first[0] + first[2]) / 2 - (second[0] + second[2]) / 2
    dy = (first[1] + first[3]) / 2 - (second[1] + second[3]) / 2
    clear = abs(dx) >= spec.spatial_min_dx * scene[0] and abs(dy) <= spec.spatial_max_dy_ratio * abs(dx)
    return clear and (dx < 0) == (answer == "left")


def _layout(spec: WorldSpec, rng: np.random.Generator, question: _Question, scene: tuple[int, int]) -> list[SceneObject] | None:
    """Place targets then distractors; None when the scene is too crowded
    (the caller redraws)."""
    placer = _Placer(spec, scene, rng)
    first = question.targets[0]
    if not placer.place(first):
        return None
    if len(question.targets) == 2:
        answer = question.spatial_answer or "left"
        if not placer.place(question.targets[1], lambda box: spatial_ok(spec, scene, first.box, box, answer), 2000):
            return None
    distractors = _plan_distractors(spec, rng, question)
    required = len(question.shown)
    placed = []
    for i, obj in enumerate(distractors):
        if placer.place(obj):
            placed.append(obj)
        elif i < required:
            return None  # an option's witness did not fit: redraw
    return placed


def generate_item(spec: WorldSpec | None, seed: int, index: int) -> WorldItem:
    """Item ``index`` of the set of ``seed`` (deterministic)."""
    spec = spec or WorldSpec()
    rng = item_rng(seed, index)
    for _ in range(50):
        question = _plan_question(spec, rng)
        scene = _scene_size(spec, rng)
        distractors = _layout(spec, rng, question, scene)
        if distractors is not None:
            break
    else:
        raise FocusConfigError(
            "the world spec packs too many objects into too small scenes; lower distractors or "
            "object_fraction, or raise scene_long_side"
        )
    background = spec.backgrounds[int(rng.integers(len(spec.backgrounds)))]
    image = render_background(background, rng, scene, list(spec.colours.values()))
    objects = [*question.targets, *distractors]
    order = rng.permutation(len(objects))  # drawing order carries no hint
    render_objects(image, [objects[i] for i in order], spec.colours)
    names = [t.format(**question.fields) for t in TARGET_TEMPLATES[question.subtype]]
    return WorldItem(
        name=f"world_{seed}_{index:05d}",
        image=image,
        question=QUESTION_TEMPLATES[question.subtype].format(**question.fields),
        options=question.options,
        answer=question.options[0],
        category=CATEGORY_OF_SUBTYPE[question.subtype],
        subtype=question.subtype,
        target_names=names,
        target_boxes=[t.box for t in question.targets],
        objects=objects,
        background=background,
        seed=int(seed),
        index=int(index),
    )


def generate_items(spec: WorldSpec | None, seed: int, n: int, start: int = 0) -> Iterator[WorldItem]:
    for index in range(start, start + n):
        yield generate_item(spec, seed, index)


def make_synthetic(out_dir: str | Path, seed: int, n: int, spec: WorldSpec | None = None) -> dict[str, Any]:
    """Write ``n`` items of ``seed`` in V*Bench's layout under ``out_dir``:
    ``direct_attributes/`` and ``relative_position/`` with ``NAME.jpg`` +
    ``NAME.json`` each, plus ``world_spec.json`` and ``manifest.json``.
    Returns the manifest."""
    if n < 1:
        raise FocusInputError(f"n={n}: generate at least one item")
    spec = spec or WorldSpec()
    out = Path(out_dir)
    for category in sorted(set(CATEGORY_OF_SUBTYPE.values())):
        (out / category).mkdir(parents=True, exist_ok=True)
    entries = []
    for item in generate_items(spec, seed, n):
        folder = out / item.category
        image_path = folder / f"{item.name}.{spec.image_format}"
        if spec.image_format == "jpg":
            item.image.save(image_path, quality=spec.jpeg_quality, subsampling=0)
        else:
            item.image.save(image_path)
        (folder / f"{item.name}.json").write_text(json.dumps(item.to_vstar_json(), indent=1))
        entries.append(_manifest_entry(item))
    (out / "world_spec.json").write_text(spec.to_json())
    manifest = {
        "generator": GENERATOR_VERSION, "seed": int(seed), "n": int(n), "spec_hash": spec.hash(), "items": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _manifest_entry(item: WorldItem) -> dict[str, Any]:
    width, height = item.image.size
    sizes = [max(b[2] - b[0], b[3] - b[1]) for b in item.target_boxes]
    return {
        "name": item.name, "category": item.category, "subtype": item.subtype,
        "image_size": [width, height], "target_px": sizes,
    }


def crop_around(item: WorldItem | Image.Image, box: Sequence[int], scale: float) -> tuple[Image.Image, Box]:
    """A square crop ``scale`` times the long side of ``box``, centred on it
    (shifted to stay inside the image; clipped where the image is smaller).
    Returns the crop and ``box`` in the crop's coordinates, e.g. training
    views of a target at zoom levels ``scale`` = 2 .. 16."""
    if scale < 1.0:
        raise FocusInputError(f"scale={scale}: a crop must be at least as large as the box (scale >= 1)")
    image = item.image if isinstance(item, WorldItem) else item
    window = square_window_about_centre(box, scale, image.size)
    x0, y0, x1, y1 = (int(v) for v in box)
    left, top = window[:2]
    return image.crop(window), (x0 - left, y0 - top, x1 - left, y1 - top)


__all__ = [
    "BACKGROUNDS", "CATEGORY_OF_SUBTYPE", "DEFAULT_LABELS", "DEFAULT_SHAPES", "GENERATOR_VERSION",
    "QUESTION_TEMPLATES", "SceneObject", "SPATIAL_OPTIONS", "TARGET_TEMPLATES", "WorldItem", "WorldSpec",
    "crop_around", "generate_item", "generate_items", "item_rng", "letter_mask", "make_synthetic", "object_mask",
    "render_background", "render_objects", "scalable_font", "true_mask",
]
