"""ROI geometry (stage 3a): property tests on random grids and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from focus_engine.boxes import (
    box_iou, boxes_overlap, merge_overlapping, scale_box_about_centre, square_window_about_centre, union_box,
    window_about_centre, xywh_to_xyxy,
)
from focus_engine.grid import GridGeometry, RelevanceMap
from focus_engine.rois import CellBox, expand_box, initial_box, nms, propose_rois, select_anchors

FAST = settings(max_examples=60, deadline=None)


@st.composite
def grids(draw):
    rows = draw(st.integers(1, 30))
    cols = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    grid = rng.random((rows, cols))
    if draw(st.booleans()):  # plateaus and ties
        grid = np.round(grid * 4) / 4
    return grid.astype(np.float32)


@st.composite
def boxes(draw, n_max=25):
    n = draw(st.integers(0, n_max))
    out = []
    for _ in range(n):
        x0 = draw(st.integers(0, 90))
        y0 = draw(st.integers(0, 90))
        out.append((x0, y0, x0 + draw(st.integers(1, 40)), y0 + draw(st.integers(1, 40))))
    return out


@FAST
@given(grids(), st.integers(1, 40), st.floats(0, 6))
def test_anchors_are_greedy_top_cells_with_spacing(grid, k, spacing):
    anchors = select_anchors(grid, k, spacing)
    assert 1 <= len(anchors) <= k
    for i, (r1, c1) in enumerate(anchors):
        for r2, c2 in anchors[:i]:
            assert (r1 - r2) ** 2 + (c1 - c2) ** 2 >= spacing**2 - 1e-9
    values = [grid[a] for a in anchors]
    assert values == sorted(values, reverse=True)
    assert anchors[0] == np.unravel_index(np.argmax(grid), grid.shape)
    # greedy: any cell better than the last anchor that was not taken is too close to an anchor
    taken = set(anchors)
    if len(anchors) < k:
        for cell in zip(*np.nonzero(grid >= 0)):
            cell = (int(cell[0]), int(cell[1]))
            if cell not in taken:
                assert any((cell[0] - r) ** 2 + (cell[1] - c) ** 2 < spacing**2 for r, c in anchors)


@FAST
@given(grids(), st.integers(1, 5), st.integers(0, 6), st.floats(0, 1))
def test_expansion_stops_as_specified(grid, s_min, extra, threshold):
    s_max = s_min + extra
    anchor = np.unravel_index(int(np.argmax(grid)), grid.shape)
    start = initial_box(anchor, grid.shape, s_min)
    box = expand_box(grid, anchor, s_min, s_max, threshold)
    assert start.r0 <= anchor[0] < start.r1 and start.c0 <= anchor[1] < start.c1
    assert box.r0 <= start.r0 and box.c0 <= start.c0 and box.r1 >= start.r1 and box.c1 >= start.c1
    assert 0 <= box.r0 < box.r1 <= grid.shape[0] and 0 <= box.c0 < box.c1 <= grid.shape[1]
    if box != start:
        assert box.side <= s_max and box.mean(grid) >= threshold
    grown = box.grown(grid.shape)
    assert grown == box or grown.side > s_max or grown.mean(grid) < threshold


def test_initial_box_is_shifted_inside_and_clipped():
    assert initial_box((0, 0), (24, 24), 3) == CellBox(0, 0, 3, 3)
    assert initial_box((23, 23), (24, 24), 3) == CellBox(21, 21, 24, 24)
    assert initial_box((10, 10), (24, 24), 3) == CellBox(9, 9, 12, 12)
    assert initial_box((0, 5), (2, 24), 3) == CellBox(0, 4, 2, 7)


def test_expansion_grows_on_a_plateau_up_to_s_max():
    grid = np.zeros((24, 24), np.float32)
    grid[5:16, 5:16] = 1.0
    box = expand_box(grid, (10, 10), 3, 7, 0.5)
    assert box == CellBox(7, 7, 14, 14)  # 3 -> 5 -> 7, then 9 > s_max
    small = expand_box(grid, (10, 10), 3, 9, 0.99)
    assert small.side == 9
    lone = np.zeros((24, 24), np.float32)
    lone[3, 3] = 1.0
    assert expand_box(lone, (3, 3), 3, 9, 0.5) == CellBox(2, 2, 5, 5)  # mean 1/25 < 0.5: stays


@FAST
@given(boxes(), st.floats(0, 1))
def test_nms_invariants(bxs, threshold):
    rng = np.random.default_rng(len(bxs))
    scores = list(np.round(rng.random(len(bxs)), 2))
    kept = nms(bxs, scores, threshold)
    assert len(set(kept)) == len(kept)
    assert [scores[i] for i in kept] == sorted((scores[i] for i in kept), reverse=True)
    for i, a in enumerate(kept):
        for b in kept[:i]:
            assert box_iou(bxs[a], bxs[b]) <= threshold
    for index in set(range(len(bxs))) - set(kept):
        assert any(box_iou(bxs[index], bxs[k]) > threshold and scores[k] >= scores[index] for k in kept)
    again = nms([bxs[i] for i in kept], [scores[i] for i in kept], threshold)
    assert again == list(range(len(kept)))


@FAST
@given(boxes(n_max=2).filter(lambda b: len(b) == 2))
def test_iou_properties(pair):
    a, b = pair
    assert box_iou(a, b) == pytest.approx(box_iou(b, a))
    assert 0.0 <= box_iou(a, b) <= 1.0
    assert box_iou(a, a) == pytest.approx(1.0)


@FAST
@given(boxes(n_max=12).filter(bool))
def test_merge_overlapping(bxs):
    merged = merge_overlapping(bxs)
    for i, a in enumerate(merged):
        for b in merged[i + 1:]:
            assert box_iou(a, b) == 0.0
    for box in bxs:  # every input lies inside one merged box
        assert any(m[0] <= box[0] and m[1] <= box[1] and m[2] >= box[2] and m[3] >= box[3] for m in merged)
    assert union_box(merged) == union_box(bxs)


def _inside(box, window):
    return window[0] <= box[0] and window[1] <= box[1] and box[2] <= window[2] and box[3] <= window[3]


@FAST
@given(boxes(n_max=12).filter(bool), st.sampled_from([0, 1, 10, 50]), st.randoms(use_true_random=False))
def test_merge_with_a_gap(bxs, gap, random):
    merged = merge_overlapping(bxs, gap)
    for i, a in enumerate(merged):
        for b in merged[i + 1:]:
            assert not boxes_overlap(a, b, gap)
    assert all(any(_inside(box, m) for m in merged) for box in bxs)
    assert union_box(merged) == union_box(bxs)
    shuffled = list(bxs)
    random.shuffle(shuffled)
    assert merge_overlapping(shuffled, gap) == merged  # the unions do not depend on the input order
    in_order = merge_overlapping(bxs, gap, order="input")
    assert sorted(in_order) == sorted(merged)
    firsts = [next(i for i, box in enumerate(bxs) if _inside(box, m)) for m in in_order]
    assert firsts == sorted(firsts)  # each union where its first box was


def test_gap_and_order_by_hand():
    assert not boxes_overlap((0, 0, 10, 10), (10, 0, 20, 10))  # touching
    assert not boxes_overlap((0, 0, 10, 10), (30, 0, 40, 10), gap=10)  # 20 px apart: grown by 10, they touch
    assert boxes_overlap((0, 0, 10, 10), (30, 0, 40, 10), gap=11)
    far, near_a, near_b = (500, 500, 510, 510), (0, 0, 10, 10), (60, 60, 70, 70)
    assert merge_overlapping([far, near_b, near_a]) == [near_a, near_b, far]
    assert merge_overlapping([far, near_b, near_a], 30) == [(0, 0, 70, 70), far]
    assert merge_overlapping([far, near_b, near_a], 30, order="input") == [far, (0, 0, 70, 70)]
    assert merge_overlapping([near_b, far, near_a], 30, order="input") == [(0, 0, 70, 70), far]
    with pytest.raises(ValueError, match="order"):
        merge_overlapping([far], order="size")


def test_xywh_to_xyxy():
    assert xywh_to_xyxy((10, 20, 30, 40)) == (10, 20, 40, 60)


def test_scale_box_about_centre_rounds_outward_and_clips():
    assert scale_box_about_centre((10, 10, 20, 20), 1.5, (100, 100)) == (7, 7, 23, 23)  # 2.5 px a side
    assert scale_box_about_centre((10, 10, 20, 30), 1.0, (100, 100)) == (10, 10, 20, 30)
    assert scale_box_about_centre((0, 90, 10, 100), 3.0, (15, 100)) == (0, 80, 15, 100)


def test_window_about_centre_is_at_least_min_side_shifted_in_at_left_top_cut_at_right_bottom():
    assert window_about_centre((0, 0, 100, 100), 1.2, (2000, 1000), min_side=336) == (0, 0, 403, 403)
    # centre 1975: 1975 - 403 // 2 = 1774; cut, not shifted, at the right and bottom
    assert window_about_centre((1950, 950, 2000, 1000), 1.2, (2000, 1000), min_side=336) == (1774, 774, 2000, 1000)
    assert window_about_centre((100, 100, 501, 151), 1.0, (2000, 1000), min_side=336) == (100, 0, 501, 336)
    assert window_about_centre((10, 10, 20, 20), 2.0, (100, 100)) == (5, 5, 25, 25)


@FAST
@given(st.integers(1, 3000), st.integers(1, 3000), st.data(), st.floats(1.0, 20.0))
def test_a_square_window_holds_the_box_inside_the_image(width, height, data, factor):
    x0, y0 = data.draw(st.integers(0, width - 1)), data.draw(st.integers(0, height - 1))
    box = (x0, y0, data.draw(st.integers(x0 + 1, width)), data.draw(st.integers(y0 + 1, height)))
    window = square_window_about_centre(box, factor, (width, height))
    side = round(max(box[2] - box[0], box[3] - box[1]) * factor)
    assert _inside(box, window) and _inside(window, (0, 0, width, height))
    assert window[2] - window[0] == min(side, width) and window[3] - window[1] == min(side, height)


def test_square_window_by_hand():
    assert square_window_about_centre((0, 0, 20, 20), 4, (300, 200)) == (0, 0, 80, 80)  # shifted in at the corner
    assert square_window_about_centre((280, 90, 290, 100), 4, (300, 200)) == (260, 75, 300, 115)
    assert square_window_about_centre((10, 10, 30, 30), 20, (300, 200)) == (0, 0, 300, 200)  # larger than the image


@FAST
@given(grids(), st.integers(200, 5000), st.integers(200, 5000), st.integers(1, 30), st.integers(1, 4))
def test_proposals_lie_inside_the_image(grid, width, height, k, s_min):
    tokens = max(grid.shape)
    geometry, rows, cols = GridGeometry.from_padded_square((width, height), tokens)
    full = np.zeros((tokens, tokens), np.float32)
    full[: grid.shape[0], : grid.shape[1]] = grid
    rmap = RelevanceMap(target="x", grid=full[rows, cols], geometry=geometry)
    rois = propose_rois(rmap, n_anchors=k, anchor_spacing=2, s_min=s_min, s_max=s_min + 2,
                        expand_threshold=0.5, nms_iou=0.3)
    assert 1 <= len(rois) <= k
    for roi in rois:
        x0, y0, x1, y1 = roi.box
        assert all(isinstance(v, int) for v in roi.box)
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert roi.target == "x" and roi.confidence is None
    assert [r.score for r in rois] == sorted((r.score for r in rois), reverse=True)
    for i, a in enumerate(rois):
        for b in rois[:i]:
            assert box_iou(a.box, b.box) <= 0.3


@pytest.mark.parametrize("size", [(2000, 1000), (1000, 2000)])
def test_corner_block_maps_to_the_image_corner(size):
    geometry, rows, cols = GridGeometry.from_padded_square(size, 24)
    grid = np.zeros(geometry.shape, np.float32)
    grid[-5:, -5:] = 0.8  # a block at the bottom-right corner of the real image
    grid[-3, -3] = 1.0  # peaking at its centre
    rmap = RelevanceMap(target="x", grid=grid, geometry=geometry)
    best = propose_rois(rmap, n_anchors=5, anchor_spacing=3, s_min=3, s_max=5, expand_threshold=0.5, nms_iou=0.3)[0]
    assert best.anchor == (geometry.shape[0] - 3, geometry.shape[1] - 3)
    width, height = size
    assert best.box[2] == width and best.box[3] == height  # touches the corner
    assert best.cells.side == 5  # grew over the block


def test_argument_errors():
    rmap = RelevanceMap(target="x", grid=np.zeros((4, 4), np.float32), geometry=GridGeometry.uniform((64, 64), (4, 4)))
    with pytest.raises(ValueError, match="n_anchors"):
        propose_rois(rmap, n_anchors=0, anchor_spacing=1, s_min=1, s_max=2, expand_threshold=0.5, nms_iou=0.3)
    with pytest.raises(ValueError, match="s_min"):
        propose_rois(rmap, n_anchors=1, anchor_spacing=1, s_min=3, s_max=2, expand_threshold=0.5, nms_iou=0.3)
    with pytest.raises(ValueError, match="nms_iou"):
        propose_rois(rmap, n_anchors=1, anchor_spacing=1, s_min=1, s_max=2, expand_threshold=0.5, nms_iou=1.5)
    with pytest.raises(ValueError, match="NaN"):
        select_anchors(np.full((2, 2), np.nan), 1, 1)


def test_boxes_follow_the_extent_of_a_large_relevant_region():
    """A relevant region wider than s_max: the paper's box stops at s_max, the
    extent-following box holds the region, twice its size about its centre."""
    grid = np.zeros((16, 16), np.float32)
    grid[5:9, 6:10] = 0.6  # a 4x4-cell object
    grid[7, 8] = 1.0
    rmap = RelevanceMap("x", grid, GridGeometry.uniform((1600, 1600), (16, 16)))
    kwargs = dict(n_anchors=1, anchor_spacing=3, s_min=2, s_max=3, expand_threshold=0.5, nms_iou=0.3)
    (paper,) = propose_rois(rmap, **kwargs)
    (extent,) = propose_rois(rmap, **kwargs, extent_floor=0.3, extent_context=2.0)
    assert paper.cells.side <= 3
    assert (extent.cells.r0, extent.cells.c0, extent.cells.r1, extent.cells.c1) == (3, 4, 11, 12)
    assert extent.box == (400, 300, 1200, 1100)
    (tight,) = propose_rois(rmap, **kwargs, extent_floor=0.3, extent_context=1.0)
    assert (tight.cells.r0, tight.cells.c0, tight.cells.r1, tight.cells.c1) == (5, 6, 9, 10)


def test_a_small_region_keeps_the_papers_box():
    grid = np.zeros((16, 16), np.float32)
    grid[7, 8] = 1.0  # relevance on one cell: a small object ...
    grid[7, 9] = 0.35  # ... bleeding into a neighbour above the floor but below the core
    rmap = RelevanceMap("x", grid, GridGeometry.uniform((1600, 1600), (16, 16)))
    kwargs = dict(n_anchors=3, anchor_spacing=3, s_min=2, s_max=3, expand_threshold=0.5, nms_iou=0.3)
    assert [r.box for r in propose_rois(rmap, **kwargs)] == [
        r.box for r in propose_rois(rmap, **kwargs, extent_floor=0.3, extent_context=2.0)]
