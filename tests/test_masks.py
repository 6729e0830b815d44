"""Region masks (box and relevance), the world's true object masks, and the
mask metrics that compare them."""

from __future__ import annotations

import numpy as np
import pytest

from focus_engine.bench.metrics import mask_match, mask_scores, summarize
from focus_engine.bench.world import COLOURS, SceneObject, generate_item, object_mask, true_mask
from focus_engine.boxes import grow_box
from focus_engine.grid import GridGeometry, RelevanceMap
from focus_engine.masks import (
    RELEVANCE_MASK_THRESHOLD, box_mask, feather_mask, grow_mask, region_mask, relevance_mask, result_mask,
)
from focus_engine.rois import ROI

SIZE = (800, 600)


def one_hot_map(target: str = "red sign", cell: tuple[int, int] = (3, 5),
                shape: tuple[int, int] = (6, 8)) -> RelevanceMap:
    """A 6x8 grid of 100-px cells over an 800x600 image, 1 at ``cell``, 0.2 elsewhere."""
    grid = np.full(shape, 0.2, dtype=np.float32)
    grid[cell] = 1.0
    return RelevanceMap(target, grid, GridGeometry.uniform(SIZE, shape))


def test_pixels_are_the_full_map_inside_the_box():
    geometry, _, _ = GridGeometry.from_padded_square((1000, 700), 24)
    rmap = RelevanceMap("x", np.random.default_rng(0).random(geometry.shape).astype(np.float32), geometry)
    assert np.array_equal(rmap.pixels((250, 100, 900, 300)), rmap.to_image()[100:300, 250:900])
    with pytest.raises(ValueError, match="inside the 1000x700 image"):
        rmap.pixels((900, 100, 1100, 300))


def test_box_mask_and_grow_are_the_boxes_grown():
    boxes = [(50, 60, 120, 100), (700, 500, 800, 600)]
    mask = box_mask(SIZE, boxes)
    assert mask.dtype == np.float32 and mask.sum() == 70 * 40 + 100 * 100
    assert np.array_equal(grow_mask(mask, 7), box_mask(SIZE, [grow_box(b, 7, SIZE) for b in boxes]))
    dot = np.zeros((20, 20), np.float32)
    dot[10, 10] = 1
    assert grow_mask(dot, 3).sum() == 49 and grow_mask(dot, 0) is dot  # a 7x7 square; 0 leaves it


def test_relevance_mask_keeps_the_hot_cell_inside_the_box():
    rmap = one_hot_map()
    roi = ROI(box=(400, 200, 700, 500), target="red sign", score=1.0)  # cells (2..4, 4..6), hot cell (3, 5)
    mask = relevance_mask(SIZE, [roi], {"red sign": rmap})
    boxed = box_mask(SIZE, [roi.box])
    assert mask[350, 550] == 1  # the hot cell's centre
    assert mask.sum() < 0.5 * boxed.sum() and np.all(mask <= boxed)  # inside the box, much smaller
    ys, xs = np.nonzero(mask)
    assert 450 <= xs.min() < 550 < xs.max() <= 650 and 250 <= ys.min() < 350 < ys.max() <= 450  # about the cell
    tighter = relevance_mask(SIZE, [roi], {"red sign": rmap}, threshold=0.9)
    assert 0 < tighter.sum() < mask.sum() and np.all(tighter <= mask)  # a higher threshold: a smaller mask
    assert relevance_mask(SIZE, [roi], {"red sign": rmap}, threshold=0.0).sum() == boxed.sum()


def test_relevance_mask_keeps_the_box_without_a_map_or_with_a_flat_one():
    roi = ROI(box=(100, 100, 300, 200), target="blue car", score=1.0)
    boxed = box_mask(SIZE, [roi.box])
    assert np.array_equal(relevance_mask(SIZE, [roi], {}), boxed)  # no map for this target (ZoomEye's views)
    flat = RelevanceMap("blue car", np.zeros((6, 8), np.float32), GridGeometry.uniform(SIZE, (6, 8)))
    assert np.array_equal(relevance_mask(SIZE, [roi], {"blue car": flat}), boxed)
    other_image = RelevanceMap("blue car", np.ones((6, 8), np.float32), GridGeometry.uniform((400, 300), (6, 8)))
    assert np.array_equal(relevance_mask(SIZE, [roi], {"blue car": other_image}), boxed)
    with pytest.raises(ValueError, match="threshold must be in"):
        relevance_mask(SIZE, [roi], {}, threshold=1.5)


def test_region_mask_shapes_grow_and_feather():
    rmap = one_hot_map()
    rois = [ROI(box=(400, 200, 700, 500), target="red sign", score=1.0)]
    box = region_mask(SIZE, rois, "box", {"red sign": rmap})
    relevance = region_mask(SIZE, rois, "relevance", {"red sign": rmap})
    assert np.array_equal(relevance, relevance_mask(SIZE, rois, {"red sign": rmap}, RELEVANCE_MASK_THRESHOLD))
    assert relevance.sum() < box.sum()
    grown = region_mask(SIZE, rois, "relevance", {"red sign": rmap}, grow=10)
    assert np.all(grown >= relevance) and grown.sum() > relevance.sum()
    soft = region_mask(SIZE, rois, "box", feather=8)
    assert 0.2 < soft[200, 550] < 0.8 and soft[350, 550] > 0.95 and soft.max() <= 1.0
    assert feather_mask(box, 0) is box
    with pytest.raises(ValueError, match="mask shape must be one of box, relevance"):
        region_mask(SIZE, rois, "outline")


def test_result_mask_takes_focus_regions_with_their_maps_and_other_regions_as_boxes():
    from types import SimpleNamespace

    roi = ROI(box=(400, 200, 700, 500), target="red sign", score=1.0)
    focus = SimpleNamespace(selected=[roi], relevance={"red sign": one_hot_map()}, regions=[roi.box])
    assert np.array_equal(result_mask(focus, SIZE, "relevance"), relevance_mask(SIZE, [roi], focus.relevance))
    zoomeye = SimpleNamespace(regions=[roi.box])  # views, no ROIs and no maps
    assert np.array_equal(result_mask(zoomeye, SIZE, "relevance"), box_mask(SIZE, [roi.box]))
    assert result_mask(SimpleNamespace(regions=[]), SIZE).sum() == 0  # the plain answer: no region


def test_true_mask_is_where_the_object_is_painted():
    item = generate_item(None, 5, 0)
    world = item.to_vstar_json()["world"]
    truth = true_mask(world, item.target_boxes, item.image.size)
    pixels = np.asarray(item.image).astype(int)
    for box, name in zip(item.target_boxes, item.target_names):
        x0, y0, x1, y1 = box
        inside = truth[y0:y1, x0:x1]
        assert 0.3 < inside.mean() < 1.0  # a shape or sign does not fill its box
        colour = name.split()[0]
        painted = pixels[y0:y1, x0:x1][inside]
        # most of the mask is the object's colour (a sign's post and letter are not)
        close = np.abs(painted - np.array(COLOURS[colour])).sum(axis=1) < 60
        assert close.mean() > 0.6, (name, close.mean())
    assert truth.sum() == sum(truth[b[1]:b[3], b[0]:b[2]].sum() for b in item.target_boxes)  # nothing outside
    assert true_mask(world, [(0, 0, 5, 5)], item.image.size) is None  # no object there
    assert true_mask({}, item.target_boxes, item.image.size) is None
    edited = {"objects": [{**o, "shape": "hexagon", "kind": "shape"} if o["box"] == list(item.target_boxes[0]) else o
                          for o in world["objects"]]}
    assert true_mask(edited, item.target_boxes, item.image.size) is None  # a shape the renderer does not draw
    bad_box = {"objects": [{"box": ["a", 0, 1, 1]}]}
    assert true_mask(bad_box, item.target_boxes, item.image.size) is None


def test_object_mask_of_a_circle_covers_a_quarter_pi_of_its_box():
    circle = object_mask(SceneObject(kind="shape", colour="red", shape="circle", box=(0, 0, 80, 80)))
    assert circle.shape == (80, 80) and abs(circle.mean() - np.pi / 4) < 0.03


def test_mask_match_and_mask_scores():
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True  # 16 pixels
    mask = np.zeros((10, 10), np.float32)
    mask[2:6, 2:4] = 1.0  # 8 of them
    mask[8, 8] = 0.4  # below half: outside
    assert mask_match(mask, truth) == {"iou": 0.5, "cover": 0.5}
    assert mask_match(np.zeros((10, 10)), truth) == {"iou": 0.0, "cover": 0.0}
    with pytest.raises(ValueError, match="cannot be scored"):
        mask_match(np.zeros((5, 5)), truth)
    records = [{"mask_scores": {"box": {"iou": 0.1, "cover": 1.0}, "relevance": {"iou": 0.3, "cover": 0.8}}},
               {"mask_scores": {"box": {"iou": 0.2, "cover": 0.5}, "relevance": {"iou": 0.5, "cover": 0.4}}},
               {"selected_boxes": []}]
    scores = mask_scores(records)
    assert scores["box"] == pytest.approx({"miou": 0.15, "cover": 0.75, "n": 2})
    assert scores["relevance"] == pytest.approx({"miou": 0.4, "cover": 0.6, "n": 2})
    assert mask_scores([{"correct": True}]) == {}
    assert summarize([{"correct": True, "ranked_boxes": None}])["mask"] == {}  # the plain answer: none
