"""Pictures of results: heatmap overlays, ROI boxes, ROI masks (PIL/numpy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .grid import RelevanceMap
from .rois import ROI

# a perceptually ordered dark-blue -> red -> yellow ramp (no matplotlib needed)
_RAMP = np.array(
    [[0, 0, 40], [40, 20, 120], [150, 30, 130], [230, 70, 60], [250, 170, 30], [255, 250, 160]], dtype=np.float32
)


def colorize(values: np.ndarray) -> np.ndarray:
    """Map ``[H, W]`` values in [0, 1] to uint8 RGB ``[H, W, 3]``."""
    scaled = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(scaled).astype(np.int64)
    high = np.minimum(low + 1, len(_RAMP) - 1)
    frac = (scaled - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[high] * frac).round().astype(np.uint8)


def preview_scale(size: tuple[int, int], max_side: int | None) -> float:
    return 1.0 if not max_side else min(1.0, max_side / max(size))


def heatmap_overlay(image: Image.Image, rmap: RelevanceMap, alpha: float = 0.55, max_side: int | None = None) -> Image.Image:
    """The image with the relevance map blended over it (optionally shrunk so
    the long side is at most ``max_side``: a 10000² map is 400 MB as floats)."""
    scale = preview_scale(image.size, max_side)
    base = image.convert("RGB")
    if scale < 1.0:
        base = base.resize(_scaled_size(image.size, scale), Image.Resampling.BILINEAR)
    colour = Image.fromarray(colorize(rmap.to_image(base.size)))
    return Image.blend(base, colour, alpha)


def _scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def draw_rois(
    image: Image.Image,
    rois: Sequence[ROI],
    selected: Sequence[ROI] = (),
    max_side: int | None = None,
    colour: tuple[int, int, int] = (255, 40, 40),
    other_colour: tuple[int, int, int] = (255, 220, 0),
) -> Image.Image:
    """Boxes drawn on the image: proposals thin, selected ROIs thick."""
    scale = preview_scale(image.size, max_side)
    out = image.convert("RGB").copy()
    if scale < 1.0:
        out = out.resize(_scaled_size(image.size, scale), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    chosen = {r.box for r in selected}
    for roi in list(rois) + list(selected):
        box = [round(v * scale) for v in roi.box]
        box[2], box[3] = max(box[0] + 1, box[2] - 1), max(box[1] + 1, box[3] - 1)
        thick = roi.box in chosen
        draw.rectangle(box, outline=colour if thick else other_colour, width=width * 2 if thick else width)
    return out


def roi_mask(size: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """float32 ``[H, W]`` mask: 1 inside any box, 0 elsewhere."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.float32)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)] = 1.0
    return mask
