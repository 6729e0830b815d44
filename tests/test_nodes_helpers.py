"""Helper nodes and the one-node pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import BOXES, image_batch


@pytest.fixture(scope="module")
def nodes(pack):
    return pack.nodes


@pytest.fixture(scope="module")
def pack_types(pack):
    """ROI and RoiBatch as the nodes see them."""
    return pack.focus_engine.rois.ROI, pack.nodes.common.RoiBatch


def rois_for(types, n: int):
    ROI, RoiBatch = types
    per_image = [[ROI(box=(100, 100, 200, 150), target="x", score=1.0), ROI(box=(400, 300, 500, 400), target="x", score=0.5)]
                 for _ in range(n)]
    return RoiBatch(per_image, [(1200, 700)] * n, selected=[[r[1]] for r in per_image])


def test_rois_to_mask_modes_grow_and_feather(nodes, pack_types):
    rois = rois_for(pack_types, 2)
    (best,) = nodes.helpers.FocusROIsToMask().to_mask(rois, "best", 1, 0, 0)
    assert best.shape == (2, 700, 1200) and best[0, 120, 150] == 1 and best[0, 350, 450] == 0
    (every,) = nodes.helpers.FocusROIsToMask().to_mask(rois, "all", 1, 0, 0)
    assert every[1, 350, 450] == 1
    (selected,) = nodes.helpers.FocusROIsToMask().to_mask(rois, "selected", 1, 0, 0)
    assert selected[0, 120, 150] == 0 and selected[0, 350, 450] == 1
    (grown,) = nodes.helpers.FocusROIsToMask().to_mask(rois, "best", 1, 20, 0)
    assert grown[0, 85, 150] == 1 and grown[0, 75, 150] == 0
    (soft,) = nodes.helpers.FocusROIsToMask().to_mask(rois, "best", 1, 0, 8)
    edge = float(soft[0, 100, 150])
    assert 0.2 < edge < 0.8 and float(soft[0, 125, 150]) > 0.95  # feathered edge, solid inside


def test_rois_to_mask_follows_the_relevance_map_when_asked(nodes, pack, pack_types):
    grid_module = pack.focus_engine.grid
    grid = np.full((14, 24), 0.2, np.float32)
    grid[2, 3] = 1.0  # 50-px cells: the cell x 150-200, y 100-150, inside the best ROI (100, 100, 200, 150)
    rmap = grid_module.RelevanceMap("x", grid, grid_module.GridGeometry.uniform((1200, 700), (14, 24)))
    rois = rois_for(pack_types, 1)
    (box,) = nodes.helpers.FocusROIsToMask().to_mask(rois, "best", 1, 0, 0)
    assert bool((nodes.helpers.FocusROIsToMask().to_mask(rois, "best", 1, 0, 0, "relevance")[0] == box).all())
    rois.maps = [{"x": rmap}]  # ROIs from Propose / Rank ROIs carry their maps
    (relevance,) = nodes.helpers.FocusROIsToMask().to_mask(rois, "best", 1, 0, 0, "relevance")
    assert relevance[0, 125, 175] == 1 and relevance[0, 125, 105] == 0 and relevance[0, 120, 300] == 0
    assert bool((relevance <= box).all()) and relevance.sum() < box.sum()
    (grown,) = nodes.helpers.FocusROIsToMask().to_mask(rois, "best", 1, 10, 0, "relevance")
    assert grown[0, 125, 205] == 1 and grown[0, 125, 215] == 0  # grown past the box's edge by 10 px
    with pytest.raises(ValueError, match="mask_shape must be one of"):
        nodes.helpers.FocusROIsToMask().to_mask(rois, "best", 1, 0, 0, "outline")


def test_crop_roi_and_draw(nodes, pack_types):
    images = image_batch(2)
    crop, mask = nodes.helpers.FocusCropROI().crop(images, rois_for(pack_types, 2), 1, 10)
    assert crop.shape == (2, 120, 120, 3) and mask.shape == (2, 700, 1200)
    torch.testing.assert_close(crop[0], images[0, 290:410, 390:510])
    assert mask[0, 295, 395] == 1 and mask[0, 280, 395] == 0
    with pytest.raises(ValueError, match="index 5 does not exist"):
        nodes.helpers.FocusCropROI().crop(images, rois_for(pack_types, 2), 5, 0)
    with pytest.raises(ValueError, match="IMAGE batch has 1"):
        nodes.helpers.FocusCropROI().crop(image_batch(1), rois_for(pack_types, 2), 0, 0)
    (drawn,) = nodes.helpers.FocusDrawROIs().draw(images, rois_for(pack_types, 2), 10)
    assert drawn.shape == images.shape and not torch.equal(drawn, images)


@pytest.mark.parametrize("batch", [1, 3])
def test_vqa_node(nodes, pack_planted, batch):
    planted = pack_planted
    images = image_batch(batch)
    answer, mask, preview, boxes, gate, bboxes, segs, core_boxes = nodes.helpers.FocusVQA().run(
        planted, images, "Where is the red square?", 2, "", "red", mask_shape="box")
    assert answer.count("\n") == batch - 1
    used = [[roi["box"] for roi in entry["rois"] if roi["selected"]] for entry in json.loads(boxes)]
    assert bboxes == [box for per_image in used for box in per_image]  # BBOX: the boxes the answer used
    # BOUNDING_BOX: the same boxes, one list per image, as {x, y, width, height}
    assert [[[b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]] for b in per_image]
            for per_image in core_boxes] == used
    assert segs[0] == (700, 1200) and [seg.bbox for seg in segs[1]] == used[0]
    assert [g["decision"] for g in json.loads(gate)] == ["off"] * batch
    assert mask.shape == (batch, 700, 1200) and preview.shape[0] == 1 and preview.shape[-1] == 3
    for i in range(batch):
        x0, y0, x1, y1 = BOXES[i]
        assert mask[i, (y0 + y1) // 2, (x0 + x1) // 2] == 1
        selected = [roi["box"] for roi in json.loads(boxes)[i]["rois"] if roi["selected"]]
        assert selected and all(float(mask[i, y0 + 1, x0 + 1]) == 1 for x0, y0, _, _ in selected)
    with pytest.raises(ValueError, match="question is empty"):
        nodes.helpers.FocusVQA().run(planted, images, " ", 2)


def test_the_gate_widget_keeps_a_confident_plain_answer(nodes, pack_planted):
    """Gate at 0.001: the planted model's plain answers are confident enough, so
    nothing is searched (empty mask) and the gate output says so per image;
    at 1.0 every image is searched."""
    images = image_batch(2)
    answer, mask, _, boxes, gate, bboxes, segs, core_boxes = nodes.helpers.FocusVQA().run(
        pack_planted, images, "Where is the red square?", 2, "", "red", 0.001)
    # no region searched: SEGS is empty, BBOX the whole image per image (Sam2Segmentation fails on an empty one)
    assert bboxes == [[0, 0, 1200, 700]] * 2 and segs == ((700, 1200), [])
    assert core_boxes == [[{"x": 0, "y": 0, "width": 1200, "height": 700}]] * 2
    decisions = json.loads(gate)
    assert [d["decision"] for d in decisions] == ["answered"] * 2 and float(mask.max()) == 0.0
    assert answer.splitlines() == [" ".join(d["plain_answer"].split()) for d in decisions]
    assert all(entry["rois"] == [] for entry in json.loads(boxes))
    _, mask, _, _, gate, *_ = nodes.helpers.FocusVQA().run(pack_planted, images, "Where is the red square?", 2, "", "red", 1.0)
    assert [d["decision"] for d in json.loads(gate)] == ["searched"] * 2 and float(mask.max()) == 1.0


def test_every_node_is_documented(pack):
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS
    assert len(NODE_CLASS_MAPPINGS) == 11
    for node_id, node in NODE_CLASS_MAPPINGS.items():
        assert NODE_DISPLAY_NAME_MAPPINGS[node_id].startswith("FOCUS · ")
        assert node.CATEGORY == "FOCUS" and node.DESCRIPTION
        assert len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES) == len(node.RETURN_NAMES)
        for section in node.INPUT_TYPES().values():
            assert all(options.get("tooltip") for _, options in section.values()), node_id


def test_the_preset_and_verify_stop_widgets_of_focus_vqa(nodes, pack_planted):
    """FOCUS · VQA on "paper (...)" runs the paper preset's config, the one
    ``make_method`` builds for the same settings, and its boxes_json records
    it; an old workflow (no preset widget) runs the default as before."""
    images = image_batch(1)

    def config_of(*args):
        boxes = nodes.helpers.FocusVQA().run(pack_planted, images, "Where is the red square?", 2, "", "red", *args)[3]
        (entry,) = json.loads(boxes)
        return entry

    old = config_of()
    assert (old["preset"], old["config"]["verify_stop"], old["config"]["overrun"]) == ("default", 0.5, False)
    paper = config_of(0.0, "paper (vstar)")
    expected = nodes.common.focus_method(pack_planted, "focus", n_steps=2, preset="paper", preset_dataset="vstar").config
    assert paper["config"] == json.loads(json.dumps(expected.to_dict()))
    assert (paper["preset"], paper["preset_dataset"], paper["config"]["verify_stop"]) == ("paper", "vstar", None)
    assert config_of(0.0, "paper (vstar)", 0.7)["config"]["verify_stop"] == 0.7  # the widget over the preset
    assert config_of(0.0, "default", 0.0)["config"]["verify_stop"] is None  # 0: off
    with pytest.raises(ValueError, match="preset 'paper \\(coco\\)'"):
        config_of(0.0, "paper (coco)")
