"""The stage nodes chained on a planted model, batches of 1 and 3, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import BOXES, image_batch


@pytest.fixture(scope="module")
def stages(pack):
    return pack.nodes.stages


@pytest.fixture
def planted(pack_planted):
    """Node tests use the model loaded through the pack's engine."""
    return pack_planted

def run_chain(stages, mllm, images, override="red"):
    targets, text = stages.FocusExtractTargets().extract(mllm, "Where is the red square?", override)
    relevance, heatmap, preview = stages.FocusRelevanceMap().relevance(mllm, images, targets, 0, 0, "values")
    rois, proposals, proposals_json, proposal_bboxes, proposal_segs, proposal_core_boxes = (
        stages.FocusProposeROIs().propose(relevance, 0, 3.0, 3, 0, 0.5, 0.3))
    ranked, selected_mask, best, ranked_json, bboxes, segs, core_boxes = stages.FocusRankROIs().rank(
        mllm, images, rois, targets, 2, True)
    answer, annotated, gate = stages.FocusAnswer().answer(
        mllm, images, "What colour is the square?", ranked, targets, "red\nblue"
    )
    return locals()


def test_the_stage_masks_follow_the_maps_through_the_chain(pack, stages, planted):
    """mask_shape relevance: Propose ROIs and Rank ROIs hand the maps on with
    the ROIs, so each node's mask, and ROIs to Mask after them, follow them."""
    images = image_batch(1)
    out = run_chain(stages, planted, images)
    propose = stages.FocusProposeROIs().propose
    box, relevance = (propose(out["relevance"], 0, 3.0, 3, 0, 0.5, 0.3, shape) for shape in ("box", "relevance"))
    assert relevance[0].maps == out["relevance"].maps
    assert bool((relevance[1] <= box[1]).all()) and relevance[1].sum() < box[1].sum()
    rank = stages.FocusRankROIs().rank
    box, relevance = (rank(planted, images, out["rois"], out["targets"], 2, True, "default", -1.0, shape)
                      for shape in ("box", "relevance"))
    assert relevance[0].maps == out["relevance"].maps
    assert bool((relevance[1] <= box[1]).all()) and 0 < relevance[1].sum() < box[1].sum()
    (again,) = pack.nodes.helpers.FocusROIsToMask().to_mask(relevance[0], "selected", 1, 0, 0, "relevance")
    assert bool((again == relevance[1]).all())


def test_the_answer_nodes_gate(stages, planted):
    images = image_batch(2)
    out = run_chain(stages, planted, images)
    assert [g["decision"] for g in json.loads(out["gate"])] == ["off", "off"]
    answer, annotated, gate = stages.FocusAnswer().answer(
        planted, images, "What colour is the square?", out["ranked"], out["targets"], "red\nblue", 0.001)
    decisions = json.loads(gate)
    assert [d["decision"] for d in decisions] == ["answered", "answered"]
    assert answer.splitlines() == [" ".join(d["plain_answer"].split()) for d in decisions]
    # nothing searched for the answer: the annotated image shows the proposals but no selected (red) box
    assert annotated.shape == out["annotated"].shape


@pytest.mark.parametrize("batch", [1, 3])
def test_chain_outputs(stages, planted, batch):
    images = image_batch(batch)
    out = run_chain(stages, planted, images)
    assert out["text"] == "red"
    assert out["heatmap"].shape == (batch, 700, 1200) and out["heatmap"].dtype == torch.float32
    assert 0.0 <= float(out["heatmap"].min()) and float(out["heatmap"].max()) <= 1.0
    assert out["preview"].shape == (batch, 700, 1200, 3)
    assert out["proposals"].shape == (batch, 700, 1200)
    assert out["selected_mask"].shape == (batch, 700, 1200)
    assert out["annotated"].shape == (batch, 700, 1200, 3)
    assert out["best"].shape[0] == batch and out["best"].shape[-1] == 3
    assert out["answer"].count("\n") == batch - 1  # one line per image
    proposals_json, ranked_json = json.loads(out["proposals_json"]), json.loads(out["ranked_json"])
    assert [entry["image"] for entry in ranked_json] == list(range(batch))
    assert len(proposals_json[0]["rois"]) == len(out["rois"].per_image[0])
    assert not any(roi["selected"] for roi in proposals_json[0]["rois"])
    for i in range(batch):
        x0, y0, x1, y1 = BOXES[i]
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        assert float(out["selected_mask"][i, cy, cx]) == 1.0  # the selected ROI covers the object
        heat = out["heatmap"][i].numpy()
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        assert x0 <= x < x1 and y0 <= y < y1
        chosen = [roi["box"] for roi in ranked_json[i]["rois"] if roi["selected"]]
        assert chosen == [list(r.box) for r in out["ranked"].selected[i]] and chosen
        assert chosen[0][0] <= cx < chosen[0][2] and chosen[0][1] <= cy < chosen[0][3]


IMPACT_SEG_FIELDS = ["cropped_image", "cropped_mask", "confidence", "crop_region", "bbox", "label",
                     "control_net_wrapper"]
"""Impact Pack's SEG namedtuple (modules/impact/core.py), field for field."""


def sam2_boxes(bboxes, individual_objects=True):
    """The boxes kijai's Sam2Segmentation hands to SAM 2, from its BBOX input
    (its loop, restated): each entry's items stacked; with
    individual_objects every entry is one object."""
    batch = [np.array(list(entry)) for entry in bboxes]
    return np.array(batch) if individual_objects else batch[-1]


@pytest.mark.parametrize("batch", [1, 3])
def test_regions_as_bbox_and_segs(stages, planted, batch):
    images = image_batch(batch)
    out = run_chain(stages, planted, images)
    selected = out["ranked"].selected
    # BBOX: the selected boxes of every image, in order, as [x0, y0, x1, y1] pixel ints
    assert out["bboxes"] == [[int(v) for v in roi.box] for rois in selected for roi in rois]
    boxes = sam2_boxes(out["bboxes"])
    assert boxes.shape == (sum(len(r) for r in selected), 4) and boxes.dtype.kind == "i"
    first = 0
    for index, rois in enumerate(selected):  # each image's boxes hold its red square's centre
        cx, cy = (BOXES[index][0] + BOXES[index][2]) / 2, (BOXES[index][1] + BOXES[index][3]) / 2
        assert any(x0 <= cx < x1 and y0 <= cy < y1 for x0, y0, x1, y1 in boxes[first:first + len(rois)])
        first += len(rois)
    assert sam2_boxes(out["bboxes"], individual_objects=False).shape == (4,)
    assert len(out["proposal_bboxes"]) == sum(len(r) for r in out["rois"].per_image)
    # SEGS of the first image, in Impact Pack's layout
    (height, width), items = out["segs"]
    assert (height, width) == (700, 1200) and len(items) == len(selected[0])
    for seg, roi in zip(items, selected[0]):
        assert list(seg._fields) == IMPACT_SEG_FIELDS and seg.control_net_wrapper is None
        x0, y0, x1, y1 = seg.crop_region
        assert 0 <= x0 <= seg.bbox[0] < seg.bbox[2] <= x1 <= width and 0 <= y0 <= seg.bbox[1] < seg.bbox[3] <= y1 <= height
        assert seg.bbox == [int(v) for v in roi.box] and seg.label == roi.target == "red"
        assert seg.cropped_image.shape == (1, y1 - y0, x1 - x0, 3)
        assert torch.equal(seg.cropped_image, images[:1, y0:y1, x0:x1, :])
        assert seg.cropped_mask.dtype == np.float32 and seg.cropped_mask.shape == (y1 - y0, x1 - x0)
        inside = seg.cropped_mask[seg.bbox[1] - y0:seg.bbox[3] - y0, seg.bbox[0] - x0:seg.bbox[2] - x0]
        assert inside.min() == 1.0 and seg.cropped_mask.sum() == inside.size  # 1 in the box, 0 around it
        assert 0.0 <= seg.confidence <= 1.0 and seg.confidence == roi.confidence
    (h, w), proposal_items = out["proposal_segs"]
    assert (h, w) == (700, 1200) and len(proposal_items) == len(out["rois"].per_image[0])
    assert all(item.cropped_image is None for item in proposal_items)  # Propose ROIs has no image input


def test_registry_has_the_stage_nodes(pack):
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS
    for node_id, name in [("FocusExtractTargets", "Extract Targets"), ("FocusRelevanceMap", "Relevance Map"),
                          ("FocusProposeROIs", "Propose ROIs"), ("FocusRankROIs", "Rank ROIs"),
                          ("FocusAnswer", "Answer")]:
        node = NODE_CLASS_MAPPINGS[node_id]
        assert NODE_DISPLAY_NAME_MAPPINGS[node_id] == f"FOCUS · {name}"
        assert node.CATEGORY == "FOCUS" and node.DESCRIPTION
        assert len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES)
        spec = node.INPUT_TYPES()
        for section in spec.values():
            assert all(options.get("tooltip") for _, options in section.values())


def test_widget_orders_are_the_contract(stages):
    assert list(stages.FocusRelevanceMap.INPUT_TYPES()["required"]) == [
        "mllm", "image", "targets", "layer_start", "layer_end", "source"]
    assert list(stages.FocusProposeROIs.INPUT_TYPES()["required"]) == [
        "relevance", "anchors", "spacing", "min_size", "max_size", "threshold", "nms_iou"]
    assert list(stages.FocusRankROIs.INPUT_TYPES()["required"]) == ["mllm", "image", "rois", "targets", "n_steps", "overrun"]
    # new widgets come last, optional: a saved workflow without them still loads, its values in place
    assert list(stages.FocusRelevanceMap.INPUT_TYPES()["optional"]) == ["preset"]
    assert list(stages.FocusRankROIs.INPUT_TYPES()["optional"]) == ["preset", "verify_stop", "mask_shape"]
    assert list(stages.FocusProposeROIs.INPUT_TYPES()["optional"]) == ["mask_shape"]
    assert list(stages.FocusAnswer.INPUT_TYPES()["optional"]) == ["options", "gate", "preset"]


def test_the_preset_flows_through_the_stage_chain(stages, planted):
    """Relevance Map on "paper (vstar)": the paper's map settings, and Propose
    ROIs (spacing -1, the preset's) takes its spacing and boxes; Rank ROIs on
    "paper (vstar)" verifies as the paper (overrun is its own widget); each
    records its config in boxes_json. Without the new widgets: the default."""
    images = image_batch(1)
    targets, _ = stages.FocusExtractTargets().extract(planted, "Where is the red square?", "red")
    relevance, *_ = stages.FocusRelevanceMap().relevance(planted, images, targets, 0, 0, "values", "paper (vstar)")
    assert (relevance.config.skip_stop_words, relevance.config.preset, relevance.config.anchor_spacing) == (
        False, "paper", 2.0)
    rois, _, proposals_json, *_ = stages.FocusProposeROIs().propose(relevance, 0, -1.0, 0, 0, 0.5, 0.3)
    (entry,) = json.loads(proposals_json)
    assert (entry["preset"], entry["config"]["anchor_spacing"], entry["config"]["extent_floor"]) == ("paper", 2.0, None)
    assert json.loads(stages.FocusProposeROIs().propose(relevance, 0, 4.0, 0, 0, 0.5, 0.3)[2])[0]["config"][
        "anchor_spacing"] == 4.0
    ranked_json = stages.FocusRankROIs().rank(planted, images, rois, targets, 2, True, "paper (vstar)")[3]
    config = json.loads(ranked_json)[0]["config"]
    assert (config["verify_stop"], config["overrun"], config["max_overrun"], config["verify_answer_hint"]) == (
        None, True, None, False)
    config = json.loads(stages.FocusRankROIs().rank(planted, images, rois, targets, 2, False)[3])[0]["config"]
    assert (config["preset"], config["verify_stop"], config["max_overrun"]) == ("default", 0.5, 8)
    with pytest.raises(ValueError, match="verify_stop"):
        stages.FocusRankROIs().rank(planted, images, rois, targets, 2, False, "default", 2.0)


def test_node_errors_are_clear(stages, planted):
    images = image_batch(1)
    with pytest.raises(ValueError, match="question is empty"):
        stages.FocusExtractTargets().extract(planted, "   ", "")
    with pytest.raises(ValueError, match="FOCUS: .*empty"):
        stages.FocusExtractTargets().extract(planted, "Q?", " , ")
    targets, _ = stages.FocusExtractTargets().extract(planted, "Q?", "red")
    relevance, _, _ = stages.FocusRelevanceMap().relevance(planted, images, targets, 0, 0, "values")
    rois, *_ = stages.FocusProposeROIs().propose(relevance, 0, 3.0, 3, 0, 0.5, 0.3)
    with pytest.raises(ValueError, match="IMAGE batch has 3"):
        stages.FocusRankROIs().rank(planted, image_batch(3), rois, targets, 2, True)
    rois.per_image[0] = []
    with pytest.raises(ValueError, match="no ROI to rank"):
        stages.FocusRankROIs().rank(planted, images, rois, targets, 2, True)
    with pytest.raises(ValueError, match="decoder layers"):
        stages.FocusRelevanceMap().relevance(planted, images, targets, 2, 99, "values")
    with pytest.raises(ValueError, match="IMAGE batch"):
        stages.FocusRelevanceMap().relevance(planted, torch.zeros(8, 8), targets, 0, 0, "values")


def test_cancel_stops_generation(pack, stages, planted, monkeypatch):
    """A Cancel during target extraction stops generation (stopping criterion)."""
    monkeypatch.setattr(pack.nodes.bridge, "interrupted", lambda: True)
    with pytest.raises(InterruptedError):
        stages.FocusExtractTargets().extract(planted, "What colour is the square?", "")
