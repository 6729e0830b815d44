"""Token grids laid over the original image, and relevance maps on them.

A model sees a resized / padded / cropped version of the user's image; every
adapter describes where its visual tokens fall in the ORIGINAL image with a
``GridGeometry``: the pixel edges of the grid's columns and rows. Cells that lie
wholly over padding are not part of the grid at all, so every cell covers some
real pixels and ``cell_box`` never leaves the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import Box, clamp_box


@dataclass(frozen=True)
class GridGeometry:
    """Column and row edges of an ``h x w`` grid in original-image pixels.

    ``x_edges`` has ``w + 1`` increasing floats in ``[0, width]``, ``y_edges``
    ``h + 1`` in ``[0, height]``; cell ``(r, c)`` spans
    ``[x_edges[c], x_edges[c+1]) x [y_edges[r], y_edges[r+1])``.
    """

    x_edges: np.ndarray
    y_edges: np.ndarray
    image_size: tuple[int, int]  # (width, height) of the original image

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.y_edges) - 1, len(self.x_edges) - 1

    @classmethod
    def uniform(cls, image_size: tuple[int, int], shape: tuple[int, int]) -> "GridGeometry":
        """A grid of equal cells over the whole image (no padding)."""
        width, height = image_size
        rows, cols = shape
        return cls(
            x_edges=np.linspace(0.0, width, cols + 1),
            y_edges=np.linspace(0.0, height, rows + 1),
            image_size=(int(width), int(height)),
        )

    @classmethod
    def from_letterbox(
        cls,
        image_size: tuple[int, int],
        content_size: tuple[int, int],
        canvas_size: tuple[int, int],
        grid_shape: tuple[int, int],
    ) -> tuple["GridGeometry", slice, slice]:
        """Geometry of a uniform grid over a canvas on which the image, resized
        to ``content_size``, was pasted centred at ``((cw - w) // 2, (ch - h) // 2)``.

        Returns the geometry of the cells that overlap the image (cells wholly
        over padding are dropped) and the (row, column) slices that select those
        cells from the full canvas grid.
        """
        width, height = image_size

        def axis(extent: int, content: int, canvas: int, cells: int) -> tuple[np.ndarray, slice]:
            offset = (canvas - content) // 2
            # canvas pixel edges of the cells, moved into original-image pixels
            edges = (np.arange(cells + 1) * (canvas / cells) - offset) * (extent / content)
            first = max(int(np.searchsorted(edges, 0.0, side="right")) - 1, 0)
            last = min(int(np.searchsorted(edges, float(extent), side="left")), cells)
            kept = np.clip(edges[first : last + 1], 0.0, float(extent))
            return kept, slice(first, last)

        x_edges, cols = axis(width, content_size[0], canvas_size[0], grid_shape[1])
        y_edges, rows = axis(height, content_size[1], canvas_size[1], grid_shape[0])
        return cls(x_edges=x_edges, y_edges=y_edges, image_size=(int(width), int(height))), rows, cols

    @classmethod
    def from_padded_square(
        cls, image_size: tuple[int, int], tokens_per_side: int
    ) -> tuple["GridGeometry", slice, slice]:
        """A ``tokens_per_side``² grid over the image padded, centred, to a square
        of side ``max(width, height)`` (LLaVA-1.5's view); see ``from_letterbox``."""
        side = max(image_size)
        return cls.from_letterbox(image_size, image_size, (side, side), (tokens_per_side, tokens_per_side))

    def cell_box(self, row: int, col: int) -> Box:
        """Pixel box ``(x0, y0, x1, y1)`` of one cell, exclusive right/bottom."""
        return self.cells_box(row, col, row + 1, col + 1)

    def cells_box(self, r0: int, c0: int, r1: int, c1: int) -> Box:
        """Pixel box covering cells ``[r0, r1) x [c0, c1)``; never empty."""
        rows, cols = self.shape
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise IndexError(f"cells [{r0}:{r1}, {c0}:{c1}] outside the {rows}x{cols} grid")
        edges = (np.floor(self.x_edges[c0]), np.floor(self.y_edges[r0]), np.ceil(self.x_edges[c1]),
                 np.ceil(self.y_edges[r1]))
        return clamp_box(edges, self.image_size)

    def pixel_to_cell_index(self, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For every pixel row / column of the image (or of a resized copy of
        it at ``size``), the index of the grid row / column it lies in."""
        full_w, full_h = self.image_size
        width, height = size or self.image_size
        xs = (np.arange(width) + 0.5) * (full_w / width)
        ys = (np.arange(height) + 0.5) * (full_h / height)
        rows_n, cols_n = self.shape
        cols = np.clip(np.searchsorted(self.x_edges, xs, side="right") - 1, 0, cols_n - 1)
        rows = np.clip(np.searchsorted(self.y_edges, ys, side="right") - 1, 0, rows_n - 1)
        return rows, cols


@dataclass
class RelevanceMap:
    """A relevance map of one target over the original image.

    ``grid`` is float32 ``[h, w]`` in ``[0, 1]`` (min-max normalised), one value
    per visual-token cell; ``geometry`` places the cells in the original image.
    ``raw`` keeps the un-normalised probabilities for diagnostics.
    """

    target: str
    grid: np.ndarray
    geometry: GridGeometry
    source: str = "values"
    layers: tuple[int, int] | None = None
    tokens: tuple[str, ...] = ()
    raw: np.ndarray | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return self.geometry.image_size

    @property
    def shape(self) -> tuple[int, int]:
        return self.geometry.shape

    def cell_box(self, row: int, col: int) -> Box:
        """Original-image pixel box ``(x0, y0, x1, y1)`` of grid cell ``(row, col)``."""
        return self.geometry.cell_box(row, col)

    def to_image(self, size: tuple[int, int] | None = None, interpolation: str = "bilinear") -> np.ndarray:
        """The map at the original image's size (or at ``size``, for previews):
        float32 ``[H, W]`` in ``[0, 1]``.

        ``bilinear`` interpolates between cell centres (the maximum sits at the
        peak cell's centre); ``nearest`` gives each pixel its cell's value.
        """
        if interpolation == "nearest":
            rows, cols = self.geometry.pixel_to_cell_index(size)
            return self.grid[rows[:, None], cols[None, :]].astype(np.float32, copy=False)
        if interpolation != "bilinear":
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', not {interpolation!r}")
        full_w, full_h = self.image_size
        width, height = size or self.image_size
        x0, x1, wx = _axis_weights(self.geometry.x_edges, width, full_w / width)
        y0, y1, wy = _axis_weights(self.geometry.y_edges, height, full_h / height)
        grid = self.grid.astype(np.float32, copy=False)
        along_x = grid[:, x0] * (1 - wx) + grid[:, x1] * wx  # [h, W], small
        out = np.empty((height, width), dtype=np.float32)
        for start in range(0, height, 1024):  # row blocks keep temporaries small on huge images
            block = slice(start, min(start + 1024, height))
            wy_b = wy[block, None]
            out[block] = along_x[y0[block]] * (1 - wy_b) + along_x[y1[block]] * wy_b
        return out

    def pixels(self, box: Box) -> np.ndarray:
        """The bilinear map of ``to_image`` at the original image's pixels
        inside ``box`` only: float32 ``[y1 - y0, x1 - x0]``, without the
        whole image's map (a region of a 4K image is cheap)."""
        full_w, full_h = self.image_size
        x0, y0, x1, y1 = (int(v) for v in box)
        if not (0 <= x0 < x1 <= full_w and 0 <= y0 < y1 <= full_h):
            raise ValueError(f"box {list(box)} is not a non-empty box inside the {full_w}x{full_h} image")
        cx0, cx1, wx = (a[x0:x1] for a in _axis_weights(self.geometry.x_edges, full_w, 1.0))
        cy0, cy1, wy = (a[y0:y1] for a in _axis_weights(self.geometry.y_edges, full_h, 1.0))
        grid = self.grid.astype(np.float32, copy=False)
        along_x = grid[:, cx0] * (1 - wx) + grid[:, cx1] * wx
        wy = wy[:, None]
        return (along_x[cy0] * (1 - wy) + along_x[cy1] * wy).astype(np.float32, copy=False)

    def peak_cell(self) -> tuple[int, int]:
        """``(row, col)`` of the highest cell."""
        flat = int(np.argmax(self.grid))
        return divmod(flat, self.grid.shape[1])

    def peak_box(self) -> Box:
        return self.cell_box(*self.peak_cell())

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "source": self.source,
            "layers": list(self.layers) if self.layers else None,
            "tokens": list(self.tokens),
            "grid": np.round(self.grid, 5).tolist(),
            "x_edges": np.round(self.geometry.x_edges, 3).tolist(),
            "y_edges": np.round(self.geometry.y_edges, 3).tolist(),
            "image_size": list(self.image_size),
            "peak_box": list(self.peak_box()),
        }


def _axis_weights(edges: np.ndarray, count: int, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``count`` output pixels of ``step`` original pixels each: the two
    neighbouring cell centres and the weight of the second (flat beyond the
    first and last centre)."""
    centres = (edges[:-1] + edges[1:]) / 2
    positions = (np.arange(count) + 0.5) * step
    upper = np.clip(np.searchsorted(centres, positions, side="right"), 1, max(len(centres) - 1, 1))
    lower = upper - 1
    if len(centres) == 1:
        zeros = np.zeros(count, dtype=np.int64)
        return zeros, zeros, np.zeros(count, dtype=np.float32)
    span = centres[upper] - centres[lower]
    weight = np.clip((positions - centres[lower]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    return lower, upper, weight.astype(np.float32)
