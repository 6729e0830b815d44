"""Pictures of results: heatmap overlays, ROI boxes, ROI masks (PIL/numpy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def heatmap_overlay(image: Image.Image, rmap: RelevanceMap, alpha: float = 0.75, max_side: int | None = None) -> Image.Image:
    """The image with the relevance map blended over it, more opaque where
    the relevance is higher (optionally shrunk so the long side is at most
    ``max_side``: a 10000² map is 400 MB as floats)."""
    scale = preview_scale(image.size, max_side)
    base = image.convert("RGB")
    if scale < 1.0:
        base = base.resize(_scaled_size(image.size, scale), Image.Resampling.BILINEAR)
    heat = rmap.to_image(base.size)
    weight = (alpha * np.sqrt(heat))[..., None]  # cold regions stay visible
    blended = np.asarray(base, np.float32) * (1 - weight) + colorize(heat).astype(np.float32) * weight
    return Image.fromarray(blended.round().astype(np.uint8))


def _scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def draw_rois(
    image: Image.Image,
    rois: Sequence[ROI],
    selected: Sequence[ROI] = (),
    max_side: int | None = None,
    max_proposals: int | None = 10,
    colour: tuple[int, int, int] = (255, 40, 40),
    other_colour: tuple[int, int, int] = (255, 220, 0),
) -> Image.Image:
    """The top ``max_proposals`` ROIs drawn thin, the selected ones thick."""
    scale = preview_scale(image.size, max_side)
    out = image.convert("RGB").copy()
    if scale < 1.0:
        out = out.resize(_scaled_size(image.size, scale), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    shown = list(rois)[:max_proposals] if max_proposals is not None else list(rois)
    for roi, thick in [(r, False) for r in shown] + [(r, True) for r in selected]:
        box = [round(v * scale) for v in roi.box]
        box[2], box[3] = max(box[0] + 1, box[2] - 1), max(box[1] + 1, box[3] - 1)
        draw.rectangle(box, outline=colour if thick else other_colour, width=width * 2 if thick else width)
    return out


def summary_figure(image: Image.Image, result: "object", panel_height: int = 480) -> Image.Image:
    """One picture of a FOCUS run: the first target's heatmap, the ROIs (the
    selected in red), and the view the answer was computed on."""
    panels, captions = [], []
    first_map = next(iter(result.relevance.items()), None)
    if first_map is not None:
        panels.append(heatmap_overlay(image, first_map[1], max_side=2 * panel_height * 4))
        captions.append(f"relevance of {first_map[0]!r}")
    panels.append(draw_rois(image, result.rois, result.selected, max_side=2 * panel_height * 4, max_proposals=5))
    captions.append("ROIs (red: the answer's)" if result.selected else "ROIs (none selected)")
    boxes = result.answer_view.get("boxes") or []
    if len(boxes) == 1:
        panels.append(image.crop(tuple(boxes[0])))
        answer = " ".join(result.answer.split())
        captions.append(f"answered on this crop: {answer if len(answer) <= 80 else answer[:77] + '...'!r}")
    return _side_by_side(panels, panel_height, captions)


def _side_by_side(panels: Sequence[Image.Image], panel_height: int, captions: Sequence[str] = ()) -> Image.Image:
    """The panels scaled to ``panel_height`` in a row on white, each with its
    caption (if any) wrapped to the panel's width underneath."""
    resized = [p.resize((max(1, round(p.width * panel_height / p.height)), panel_height), Image.Resampling.BILINEAR)
               for p in panels]
    font_size = max(14, panel_height // 24)
    font = _font(font_size) if captions else None
    lines = [_wrap(caption, font, panel.width - 8) for caption, panel in zip(captions, resized)]
    gap = 12
    text_height = (font_size + 4) * max(len(wrapped) for wrapped in lines) + 12 if lines else 0
    canvas = Image.new("RGB", (sum(p.width for p in resized) + gap * (len(resized) - 1), panel_height + text_height),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for index, panel in enumerate(resized):
        canvas.paste(panel, (x, 0))
        for row, line in enumerate(lines[index] if index < len(lines) else []):
            draw.text((x + 4, panel_height + 6 + row * (font_size + 4)), line, fill=(0, 0, 0), font=font)
        x += panel.width + gap
    return canvas


def _font(size: int) -> "ImageFont.ImageFont":
    try:  # Pillow >= 10.1 scales its built-in font
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def comparison_figure(
    image: Image.Image, result: "object", plain_caption: str, focus_caption: str, panel_height: int = 480
) -> Image.Image:
    """Plain answering next to FOCUS: the whole image as the model sees it
    for a plain answer, the first target's heatmap with the selected ROIs,
    and the view FOCUS answered on; each with a caption underneath."""
    heat = next(iter(result.relevance.values()), None)
    middle = heatmap_overlay(image, heat, max_side=2 * panel_height * 4) if heat is not None else image.convert("RGB")
    middle = draw_rois(middle, [], [_scaled_roi(r, middle.width / image.width) for r in result.selected])
    boxes = result.answer_view.get("boxes") or []
    right = image.crop(tuple(boxes[0])) if len(boxes) == 1 else draw_rois(image, [], result.selected)
    return _side_by_side([image.convert("RGB"), middle, right], panel_height,
                         [plain_caption, "relevance map and the chosen ROI", focus_caption])


def _wrap(text: str, font: "ImageFont.ImageFont", width: int) -> list[str]:
    """Words of ``text`` in lines no wider than ``width`` pixels (a longer word keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


def _scaled_roi(roi: ROI, scale: float) -> ROI:
    from dataclasses import replace

    return replace(roi, box=tuple(round(v * scale) for v in roi.box))
