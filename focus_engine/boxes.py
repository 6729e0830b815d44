"""Pixel boxes, one definition for the whole engine.

A box is ``(x0, y0, x1, y1)`` in original-image pixels with exclusive right
and bottom edges: ROIs, ground-truth boxes, crops and masks all use it.
Functions that only read a box take any four numbers (``BoxLike``: a dataset's
boxes may be floats); those that make one return ints (``Box``).
"""

from __future__ import annotations

from typing import Sequence

Box = tuple[int, int, int, int]
BoxLike = Sequence[float]


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


def box_area(box: BoxLike) -> float:
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


def intersection_area(a: BoxLike, b: BoxLike) -> float:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def boxes_overlap(a: BoxLike, b: BoxLike) -> bool:
    """Whether two boxes share a positive area (touching edges do not count)."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


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


def merge_overlapping(boxes: Sequence[BoxLike]) -> list[Box]:
    """Boxes that overlap replaced by their union until none overlap, sorted
    by (y0, x0). The result does not depend on the input order: boxes that
    overlap must end up together, and so must a union and what it reaches."""
    merged: list[Box] = []
    for box in boxes:
        grown: Box = tuple(int(v) for v in box)  # type: ignore[assignment]
        while True:  # a union can reach boxes its parts did not
            hits = [m for m in merged if boxes_overlap(m, grown)]
            if not hits:
                break
            merged = [m for m in merged if not boxes_overlap(m, grown)]
            grown = union_box([grown, *hits])
        merged.append(grown)
    return sorted(merged, key=lambda b: (b[1], b[0]))


__all__ = [
    "Box", "BoxLike", "box_area", "box_iou", "boxes_overlap", "clamp_box", "coverage", "grow_box",
    "intersection_area", "merge_overlapping", "union_box",
]
