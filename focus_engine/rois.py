"""Stage 3a: candidate ROIs from a relevance map (pure numpy geometry).

Anchors are the highest cells, kept at least ``spacing`` cells apart; each
grows from an ``s_min`` box one cell per side while the mean relevance inside
stays above the threshold and its side within ``s_max``; boxes are ordered by
anchor relevance and thinned by NMS. Cell boxes become original-image pixel
boxes through the map's geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .boxes import Box, box_iou
from .grid import RelevanceMap


@dataclass(frozen=True)
class CellBox:
    """Grid cells ``[r0, r1) x [c0, c1)``."""

    r0: int
    c0: int
    r1: int
    c1: int

    @property
    def height(self) -> int:
        return self.r1 - self.r0

    @property
    def width(self) -> int:
        return self.c1 - self.c0

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    def mean(self, grid: np.ndarray) -> float:
        return float(grid[self.r0 : self.r1, self.c0 : self.c1].mean())

    def scaled(self, factor: float, shape: tuple[int, int]) -> "CellBox":
        """``factor`` times as tall and wide about the same centre (rounded to
        whole cells), clipped at the grid border."""
        pad_r = int(round((factor - 1.0) * self.height / 2))
        pad_c = int(round((factor - 1.0) * self.width / 2))
        rows, cols = shape
        return CellBox(max(self.r0 - pad_r, 0), max(self.c0 - pad_c, 0), min(self.r1 + pad_r, rows),
                       min(self.c1 + pad_c, cols))

    def union(self, other: "CellBox") -> "CellBox":
        return CellBox(min(self.r0, other.r0), min(self.c0, other.c0), max(self.r1, other.r1), max(self.c1, other.c1))

    def grown(self, shape: tuple[int, int]) -> "CellBox":
        """One cell more on every side, clipped at the grid border."""
        rows, cols = shape
        return CellBox(max(self.r0 - 1, 0), max(self.c0 - 1, 0), min(self.r1 + 1, rows), min(self.c1 + 1, cols))

    def to_json(self) -> dict[str, int]:
        return {"r0": self.r0, "c0": self.c0, "r1": self.r1, "c1": self.c1}


@dataclass
class ROI:
    """A region of interest in original-image pixels (exclusive right/bottom)."""

    box: Box
    target: str
    score: float
    """Relevance of the anchor cell (0..1)."""
    confidence: float | None = None
    """Yes/no verification confidence; None while unverified."""
    cells: CellBox | None = None
    anchor: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "box": [int(v) for v in self.box],
            "target": self.target,
            "score": round(float(self.score), 6),
            "confidence": None if self.confidence is None else round(float(self.confidence), 6),
            "cells": self.cells.to_json() if self.cells else None,
            "anchor": list(self.anchor) if self.anchor else None,
        }


def select_anchors(grid: np.ndarray, k: int, spacing: float) -> list[tuple[int, int]]:
    """Up to ``k`` cells by descending value (ties in row-major order), each at
    least ``spacing`` cells (Euclidean) from every anchor taken before it."""
    grid = np.asarray(grid, dtype=np.float64)
    if np.isnan(grid).any():
        raise ValueError("the relevance grid contains NaN")
    order = np.argsort(-grid, axis=None, kind="stable")
    cols = grid.shape[1]
    taken: list[tuple[int, int]] = []
    for flat in order:
        if len(taken) == k:
            break
        row, col = divmod(int(flat), cols)
        if all((row - r) ** 2 + (col - c) ** 2 >= spacing**2 for r, c in taken):
            taken.append((row, col))
    return taken


def initial_box(anchor: tuple[int, int], grid_shape: tuple[int, int], s_min: int) -> CellBox:
    """An ``s_min`` square centred on the anchor, shifted inside the grid
    (clipped where the grid is smaller than ``s_min``)."""

    def axis(centre: int, extent: int) -> tuple[int, int]:
        size = min(s_min, extent)
        start = min(max(centre - size // 2, 0), extent - size)
        return start, start + size

    r0, r1 = axis(anchor[0], grid_shape[0])
    c0, c1 = axis(anchor[1], grid_shape[1])
    return CellBox(r0, c0, r1, c1)


def expand_box(
    grid: np.ndarray, anchor: tuple[int, int], s_min: int, s_max: int, threshold: float
) -> CellBox:
    """Grow the anchor's initial box one cell per side while the grown box's
    side stays <= ``s_max`` and its mean relevance >= ``threshold``."""
    box = initial_box(anchor, grid.shape, s_min)
    while True:
        grown = box.grown(grid.shape)
        if grown == box or grown.side > s_max or grown.mean(grid) < threshold:
            return box
        box = grown


def region_box(grid: np.ndarray, anchor: tuple[int, int], floor: float) -> CellBox:
    """The bounding box of the cells connected to ``anchor`` (8-neighbours)
    whose relevance is at least ``floor`` (the grid is min-max normalised):
    how far the relevant region around the anchor reaches (the anchor alone
    where it is itself below ``floor``). [ours]"""
    rows, cols = grid.shape
    level = floor
    seen = {anchor}
    stack = [anchor]
    while stack:
        r, c = stack.pop()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                cell = (r + dr, c + dc)
                if cell not in seen and 0 <= cell[0] < rows and 0 <= cell[1] < cols and grid[cell] >= level:
                    seen.add(cell)
                    stack.append(cell)
    found_rows = [r for r, _ in seen]
    found_cols = [c for _, c in seen]
    return CellBox(min(found_rows), min(found_cols), max(found_rows) + 1, max(found_cols) + 1)


def nms(boxes: Sequence[Sequence[float]], scores: Sequence[float], iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, by descending score
    (ties keep the lower index first)."""
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for index in order:
        if all(box_iou(boxes[index], boxes[k]) <= iou_threshold for k in kept):
            kept.append(index)
    return kept


def propose_rois(
    rmap: RelevanceMap,
    *,
    n_anchors: int,
    anchor_spacing: float,
    s_min: int,
    s_max: int,
    expand_threshold: float,
    nms_iou: float,
    extent_floor: float | None = None,
    extent_context: float = 2.0,
    extent_core: float = 0.5,
) -> list[ROI]:
    """ROIs of one relevance map, ordered by anchor relevance, after NMS.
    With ``extent_floor``, where the cells of relevance >= ``extent_core``
    around the anchor span two cells or more (a large object), the box also
    spans the anchor's relevant region (``region_box`` at ``extent_floor``)
    widened ``extent_context`` times about its centre, beyond ``s_max``: the
    object is covered whole, with context around it; a one-cell peak (a small
    object) keeps the paper's box. [ours]"""
    if n_anchors < 1:
        raise ValueError(f"n_anchors must be at least 1, got {n_anchors}")
    if s_min < 1 or s_max < s_min:
        raise ValueError(f"need 1 <= s_min <= s_max, got s_min={s_min}, s_max={s_max}")
    if anchor_spacing < 0:
        raise ValueError(f"anchor_spacing must be >= 0, got {anchor_spacing}")
    for name, value in (("expand_threshold", expand_threshold), ("nms_iou", nms_iou)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    grid = np.asarray(rmap.grid, dtype=np.float64)
    rois = []
    for anchor in select_anchors(grid, n_anchors, anchor_spacing):
        cells = expand_box(grid, anchor, s_min, s_max, expand_threshold)
        # [ours] a region of more than one cell of high relevance is a large object: hold all of it
        if extent_floor is not None and region_box(grid, anchor, max(extent_core, extent_floor)).side >= 2:
            cells = cells.union(region_box(grid, anchor, extent_floor).scaled(extent_context, grid.shape))
        box = rmap.geometry.cells_box(cells.r0, cells.c0, cells.r1, cells.c1)
        rois.append(ROI(box=box, target=rmap.target, score=float(grid[anchor]), cells=cells, anchor=anchor))
    # anchors already come in descending relevance, so NMS keeps that order
    keep = nms([r.box for r in rois], [r.score for r in rois], nms_iou)
    return [rois[i] for i in keep]


def propose_for_maps(maps: Iterable[RelevanceMap], config: Any) -> list[ROI]:
    """Stage 3a: the ROIs of every target's map (in the maps' order), with the
    proposal fields of a resolved FocusConfig."""
    return [
        roi
        for rmap in maps
        for roi in propose_rois(
            rmap,
            n_anchors=config.n_anchors,
            anchor_spacing=config.anchor_spacing,
            s_min=config.s_min,
            s_max=config.s_max,
            expand_threshold=config.expand_threshold,
            nms_iou=config.nms_iou,
            extent_floor=config.extent_floor,
            extent_context=config.extent_context,
            extent_core=config.extent_core,
        )
    ]
