"""Grid geometry over the original image and map upsampling."""

from __future__ import annotations

import numpy as np
import pytest

from focus_engine.grid import GridGeometry, RelevanceMap


@pytest.mark.parametrize("size", [(2000, 1000), (1000, 2000), (1500, 1500), (16, 3000), (333, 334)])
def test_letterbox_cells_cover_exactly_the_image(size):
    geometry, rows, cols = GridGeometry.from_padded_square(size, 24)
    width, height = size
    assert geometry.x_edges[0] == 0 and geometry.x_edges[-1] == width
    assert geometry.y_edges[0] == 0 and geometry.y_edges[-1] == height
    assert np.all(np.diff(geometry.x_edges) > 0) and np.all(np.diff(geometry.y_edges) > 0)
    assert geometry.shape == (rows.stop - rows.start, cols.stop - cols.start)
    long_axis = 1 if width >= height else 0
    assert geometry.shape[long_axis] == 24  # the long side keeps every token


def test_padding_rows_are_dropped_symmetrically():
    geometry, rows, cols = GridGeometry.from_padded_square((2400, 1200), 24)
    assert (rows.start, rows.stop) == (6, 18) and (cols.start, cols.stop) == (0, 24)
    assert geometry.cell_box(0, 0) == (0, 0, 100, 100)
    assert geometry.cell_box(11, 23) == (2300, 1100, 2400, 1200)


def test_resized_letterbox_matches_padded_square():
    """Resizing first (as the LLaVA adapter does) gives the same cells as padding first."""
    padded, _, _ = GridGeometry.from_padded_square((2400, 1200), 24)
    resized, _, _ = GridGeometry.from_letterbox((2400, 1200), (336, 168), (336, 336), (24, 24))
    np.testing.assert_allclose(padded.x_edges, resized.x_edges)
    np.testing.assert_allclose(padded.y_edges, resized.y_edges)


def test_to_image_bilinear_and_nearest():
    geometry = GridGeometry.uniform((300, 200), (2, 3))
    grid = np.zeros((2, 3), np.float32)
    grid[1, 2] = 1.0
    rmap = RelevanceMap(target="x", grid=grid, geometry=geometry)
    smooth = rmap.to_image()
    assert smooth.shape == (200, 300) and smooth.dtype == np.float32
    assert 0.0 <= smooth.min() and smooth.max() <= 1.0
    y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    assert 200 <= x < 300 and 100 <= y < 200  # inside the peak cell
    assert smooth[150, 250] == pytest.approx(1.0, abs=0.02)  # its centre
    assert smooth[0, 0] == 0.0
    nearest = rmap.to_image(interpolation="nearest")
    assert nearest[100:, 200:].min() == 1.0 and nearest[:100].max() == 0.0
    preview = rmap.to_image((30, 20))
    assert preview.shape == (20, 30)
    with pytest.raises(ValueError):
        rmap.to_image(interpolation="cubic")


def test_narrow_image_axes():
    """A 16 px wide image spans one or two of 24 columns; one-cell axes interpolate flat."""
    geometry, _, _ = GridGeometry.from_padded_square((16, 3000), 24)
    rows, cols = geometry.shape
    assert rows == 24 and cols in (1, 2)
    grid = np.repeat(np.linspace(0, 1, rows, dtype=np.float32)[:, None], cols, axis=1)
    image = RelevanceMap(target="x", grid=grid, geometry=geometry).to_image()
    assert image.shape == (3000, 16) and np.isfinite(image).all()
    assert image[-1, 0] == pytest.approx(1.0) and image[0, 0] == pytest.approx(0.0)
    one = GridGeometry.uniform((50, 40), (1, 1))
    flat = RelevanceMap(target="x", grid=np.ones((1, 1), np.float32), geometry=one).to_image()
    assert flat.shape == (40, 50) and np.all(flat == 1.0)
