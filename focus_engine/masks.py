"""Region masks: the MASK the nodes and the CLI hand out for FOCUS's regions.

Two shapes, both float32 ``[H, W]`` in ``0..1`` at the image's size:

- ``box``: 1 inside each region's box (the box FOCUS verified and answered on:
  a generous area around the object, with context).
- ``relevance``: inside each region's box, the pixels where its target's
  relevance map (bilinear between cell centres, ``RelevanceMap.pixels``)
  reaches ``threshold`` of the map's highest value inside that box: the part
  of the box the model relates to the object. The map has one value per
  visual token (a cell of 14-32 px of the model's view, tens to hundreds of
  the original's), so this follows the object only as closely as a cell; a
  region without a map (ZoomEye's views) or whose map is flat inside it
  keeps its box.

``grow`` dilates the mask by that many pixels (a square, as ComfyUI's Grow
Mask); ``feather`` blurs its edges (a Gaussian of that radius).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .boxes import BoxLike

MASK_SHAPES = ("box", "relevance")
DEFAULT_MASK_SHAPE = "relevance"
"""On held-out seed 45 its mask mIoU against the objects' true masks is 3.2
times the box's (8.7 % against 2.7 %) for 1.7 points less cover (83.8 %
against 85.5 %): docs/benchmarks.md, "Masks that follow the object"."""
RELEVANCE_MASK_THRESHOLD = 0.3
"""Of the map's highest value inside the region's box: chosen on development
seed 22 as the largest mask mIoU that keeps the box's cover within two points
(docs/benchmarks.md, "Masks that follow the object")."""


def box_mask(size: tuple[int, int], boxes: Sequence[BoxLike]) -> np.ndarray:
    """1 inside any box, 0 elsewhere (boxes clipped to the image)."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.float32)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0)) : min(height, int(y1)), max(0, int(x0)) : min(width, int(x1))] = 1.0
    return mask


def relevance_mask(size: tuple[int, int], rois: Sequence[Any], maps: Mapping[str, Any],
                   threshold: float = RELEVANCE_MASK_THRESHOLD) -> np.ndarray:
    """Per ROI (``.box``, ``.target``), its box's pixels where the map of its
    target (``maps[target]``, a ``RelevanceMap``) reaches ``threshold`` times
    its highest value inside the box; the whole box where there is no such map
    or the map has no positive value inside it."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the relevance mask's threshold must be in [0, 1], got {threshold}")
    width, height = size
    mask = np.zeros((height, width), dtype=np.float32)
    for roi in rois:
        x0, y0, x1, y1 = (int(v) for v in roi.box)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        rmap = maps.get(roi.target)
        if rmap is None or tuple(rmap.image_size) != (width, height):
            mask[y0:y1, x0:x1] = 1.0
            continue
        values = rmap.pixels((x0, y0, x1, y1))
        top = float(values.max())
        inside = values >= threshold * top if top > 0 else np.ones_like(values, dtype=bool)
        mask[y0:y1, x0:x1] = np.maximum(mask[y0:y1, x0:x1], inside.astype(np.float32))
    return mask


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by a ``(2 * pixels + 1)``-square (any value > 0 counts
    as inside): a square is a row window then a column window, each a
    difference of running counts, exact and linear in the image."""
    if pixels <= 0:
        return mask
    inside = mask > 0
    for axis in (1, 0):
        length = inside.shape[axis]
        counts = np.concatenate([np.zeros_like(inside.take([0], axis), dtype=np.int32),
                                 inside.cumsum(axis, dtype=np.int32)], axis)
        index = np.arange(length)
        upper, lower = np.minimum(index + pixels + 1, length), np.maximum(index - pixels, 0)
        inside = (counts.take(upper, axis) - counts.take(lower, axis)) > 0
    return np.maximum(mask, inside.astype(np.float32))


def feather_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` with edges blurred by a Gaussian of ``radius`` pixels."""
    if radius <= 0:
        return mask
    from PIL import Image, ImageFilter

    blurred = Image.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, np.float32) / 255.0


def region_mask(size: tuple[int, int], rois: Sequence[Any], shape: str = DEFAULT_MASK_SHAPE,
                maps: Mapping[str, Any] | None = None, *, grow: int = 0, feather: int = 0,
                threshold: float = RELEVANCE_MASK_THRESHOLD) -> np.ndarray:
    """The MASK of ``rois`` (objects with ``.box`` and ``.target``) in the
    given ``shape`` (``MASK_SHAPES``), grown and feathered."""
    if shape not in MASK_SHAPES:
        raise ValueError(f"mask shape must be one of {', '.join(MASK_SHAPES)}, not {shape!r}")
    if shape == "relevance":
        mask = relevance_mask(size, rois, maps or {}, threshold)
    else:
        mask = box_mask(size, [roi.box for roi in rois])
    return feather_mask(grow_mask(mask, grow), feather)


def result_mask(result: Any, size: tuple[int, int], shape: str = DEFAULT_MASK_SHAPE) -> np.ndarray:
    """The MASK of a method result's regions in ``shape`` (what ``focus run``
    writes and the bench scores): FOCUS's selected ROIs with its maps; a
    method without ROIs (ZoomEye) gives its regions' boxes, with no map."""
    from .rois import ROI

    rois = getattr(result, "selected", None)
    if rois is None:
        rois = [ROI(box=tuple(box), target="", score=0.0) for box in result.regions]
    return region_mask(size, rois, shape, getattr(result, "relevance", None) or {})


__all__ = ["DEFAULT_MASK_SHAPE", "MASK_SHAPES", "RELEVANCE_MASK_THRESHOLD", "box_mask", "feather_mask", "grow_mask",
           "region_mask", "relevance_mask", "result_mask"]
