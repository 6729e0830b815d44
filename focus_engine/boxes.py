"""Pixel boxes, one definition for the whole engine.

A box is ``(x0, y0, x1, y1)`` in original-image pixels with exclusive right
and bottom edges: ROIs, ground-truth boxes, crops and masks all use it.
Functions that only read a box take any four numbers (``BoxLike``: a dataset's
boxes may be floats); those that make one return ints (``Box``). The one
other format, ``(x, y, width, height)`` (``XYWH``), is only where a tree is
split (ZoomEye), and says so in its names; ``xywh_to_xyxy`` converts it.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

Box = tuple[int, int, int, int]
BoxLike = Sequence[float]
XYWH = tuple[int, int, int, int]
"""``(x, y, width, height)``."""


def xywh_to_xyxy(xywh: Sequence[int]) -> Box:
    """``(x, y, width, height)`` as ``(x0, y0, x1, y1)``."""
    x, y, w, h = xywh
    return x, y, x + w, y + h


def clamp_box(box: BoxLike, size: tuple[int, int]) -> Box:
    """``box`` as ints inside an image of ``size`` (width, height), at least
    one pixel wide and tall even where it lay wholly outside."""
    width, height = size
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    return x0, y0, max(min(x1, width), x0 + 1), max(min(y1, height), y0 + 1)


def grow_box(box: BoxLike, pixels: int, size: tuple[int, int]) -> Box:
    """``box`` grown by ``pixels`` on every side, clipped to the image."""
    width, height = size
    x0, y0, x1, y1 = (int(v) for v in box)
    return max(0, x0 - pixels), max(0, y0 - pixels), min(width, x1 + pixels), min(height, y1 + pixels)


def scale_box_about_centre(box: BoxLike, factor: float, size: tuple[int, int]) -> Box:
    """``box`` scaled ``factor`` times about its centre: each side moved out by
    ``(factor - 1) / 2`` of the box's width (height), left and top rounded
    down, right and bottom up, then clipped to an image of ``size``."""
    width, height = size
    x0, y0, x1, y1 = box
    grow_w, grow_h = (x1 - x0) * (factor - 1) / 2, (y1 - y0) * (factor - 1) / 2
    return (max(0, math.floor(x0 - grow_w)), max(0, math.floor(y0 - grow_h)),
            min(width, math.ceil(x1 + grow_w)), min(height, math.ceil(y1 + grow_h)))


def window_about_centre(box: BoxLike, factor: float, size: tuple[int, int], min_side: int = 0) -> Box:
    """A window on ``box``'s centre (rounded down) of ``int(max(ceil(w),
    min_side) * factor)`` by the same in height: at least ``min_side`` and
    then ``factor`` times that, each axis on its own. It is shifted right /
    down to start inside the image of ``size`` but cut, not shifted, at the
    right / bottom edge (ZoomEye's node view)."""
    width, height = size
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    side_w = int(max(math.ceil(w), min_side) * factor)
    side_h = int(max(math.ceil(h), min_side) * factor)
    cx, cy = int(x0 + w / 2), int(y0 + h / 2)
    left, top = max(0, cx - side_w // 2), max(0, cy - side_h // 2)
    return left, top, min(left + side_w, width), min(top + side_h, height)


def square_window_about_centre(box: BoxLike, factor: float, size: tuple[int, int]) -> Box:
    """A square ``round(factor * long side of box)`` on a side, centred on
    ``box`` (its corners taken as ints; the start rounded to nearest), shifted
    to lie inside the image of ``size``; along an axis where the image is
    shorter than the side, the whole of that axis."""
    x0, y0, x1, y1 = (int(v) for v in box)
    side = round(max(x1 - x0, y1 - y0) * factor)

    def span(centre: float, extent: int) -> tuple[int, int]:
        length = min(side, extent)
        start = min(max(int(round(centre - length / 2)), 0), extent - length)
        return start, start + length

    (left, right), (top, bottom) = span((x0 + x1) / 2, size[0]), span((y0 + y1) / 2, size[1])
    return left, top, right, bottom


def box_area(box: BoxLike) -> float:
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


def intersection_area(a: BoxLike, b: BoxLike) -> float:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def boxes_overlap(a: BoxLike, b: BoxLike, gap: float = 0) -> bool:
    """Whether two boxes share a positive area (touching edges do not count);
    with ``gap``, whether they do once each is grown by ``gap`` on every side
    (they are less than ``2 * gap`` apart on both axes)."""
    return min(a[2], b[2]) + gap > max(a[0], b[0]) - gap and min(a[3], b[3]) + gap > max(a[1], b[1]) - gap


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union."""
    inter = intersection_area(a, b)
    union = box_area(a) + box_area(b) - inter
    return float(inter / union) if inter > 0 and union > 0 else 0.0


def coverage(box: BoxLike, of: BoxLike) -> float:
    """``area(box ∩ of) / area(of)`` in [0, 1]: how much of ``of`` lies inside
    ``box`` (0 for an empty ``of``)."""
    area = box_area(of)
    return intersection_area(box, of) / area if area > 0 else 0.0


def union_box(boxes: Sequence[BoxLike]) -> Box:
    """The smallest box holding every box."""
    if not boxes:
        raise ValueError("union of no boxes")
    return (
        int(min(b[0] for b in boxes)), int(min(b[1] for b in boxes)),
        int(max(b[2] for b in boxes)), int(max(b[3] for b in boxes)),
    )


def merge_overlapping(
    boxes: Sequence[BoxLike], gap: float = 0, order: Literal["top_left", "input"] = "top_left"
) -> list[Box]:
    """Boxes that overlap (``boxes_overlap`` with ``gap``) replaced by their
    union until none do. The unions do not depend on the input order: boxes
    that overlap must end up together, and so must a union and what it
    reaches. ``order``: ``top_left`` sorts them by (y0, x0); ``input`` keeps
    them in the order of each union's first box in ``boxes``."""
    if order not in ("top_left", "input"):
        raise ValueError(f"order={order!r}: 'top_left' or 'input'")
    merged: list[tuple[int, Box]] = []  # (index of the union's first box, the union)
    for index, box in enumerate(boxes):
        first, grown = index, tuple(int(v) for v in box)
        while True:  # a union can reach boxes its parts did not
            hits = [m for m in merged if boxes_overlap(m[1], grown, gap)]
            if not hits:
                break
            merged = [m for m in merged if not boxes_overlap(m[1], grown, gap)]
            first = min(first, *(i for i, _ in hits))
            grown = union_box([grown, *(b for _, b in hits)])
        merged.append((first, grown))  # type: ignore[arg-type]
    if order == "input":
        return [b for _, b in sorted(merged, key=lambda m: m[0])]
    return [b for _, b in sorted(merged, key=lambda m: (m[1][1], m[1][0]))]


__all__ = [
    "Box", "BoxLike", "XYWH", "box_area", "box_iou", "boxes_overlap", "clamp_box", "coverage", "grow_box",
    "intersection_area", "merge_overlapping", "scale_box_about_centre", "square_window_about_centre", "union_box",
    "window_about_centre", "xywh_to_xyxy",
]
