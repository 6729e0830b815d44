"""FOCUS · Find: the regions of the named objects (or the question's),
verified, with no answer call; the same regions FOCUS · VQA would answer on."""

from __future__ import annotations

import json

import pytest

from helpers import image_batch


@pytest.fixture(scope="module")
def find(pack):
    return pack.nodes.find.FocusFind()


def test_find_gives_the_regions_vqa_answers_on_without_the_answer(pack, pack_planted, find):
    images = image_batch(2)
    calls = pack_planted.counter.generate_calls
    mask, bboxes, segs, core, regions, preview, rois = find.find(pack_planted, images, "red", 2)
    find_calls = pack_planted.counter.generate_calls - calls
    answer, vqa_mask, _, vqa_json, _, vqa_bboxes, _, vqa_core = pack.nodes.helpers.FocusVQA().run(
        pack_planted, images, "Where is the red square?", 2, "", "red")
    assert answer  # VQA answers; Find only searches
    assert bboxes == vqa_bboxes and core == vqa_core and bool((mask == vqa_mask).all())
    assert find_calls == 0  # no answer generated: the verification is a forward pass each, not a generate call
    found = json.loads(regions)
    assert len(found) == 2 and all(any(r["selected"] for r in entry["rois"]) for entry in found)
    selected = [r for r in found[0]["rois"] if r["selected"]]
    assert [r["box"] for r in selected] == [[b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]]
                                             for b in core[0]]
    assert all(r["confidence"] is not None for r in selected)  # n_steps=2: verified
    assert [seg.confidence for seg in segs[1]] == pytest.approx([r["confidence"] for r in selected], abs=1e-3)
    assert preview.shape[0] == 2 and preview.shape[-1] == 3
    assert rois.selected is not None and [r.box for r in rois.selected[0]] == [tuple(r["box"]) for r in selected]
    (to_mask,) = pack.nodes.helpers.FocusROIsToMask().to_mask(rois, "selected", 1, 0, 0)
    assert bool((to_mask == mask).all())  # the ROIs output feeds the other FOCUS nodes


def test_find_vqa_and_rois_to_mask_give_the_same_mask_of_each_shape(pack, pack_planted, find):
    """mask_shape relevance: inside the box mask, smaller, and the same from
    Find, VQA and ROIs to Mask on Find's ROIs; the default is the box."""
    images = image_batch(1)
    box, relevance = (find.find(pack_planted, images, "red", 2, mask_shape=shape) for shape in ("box", "relevance"))
    default = {"box": box, "relevance": relevance}[pack.focus_engine.masks.DEFAULT_MASK_SHAPE]
    assert bool((find.find(pack_planted, images, "red", 2)[0] == default[0]).all())
    assert bool((relevance[0] <= box[0]).all()) and 0 < relevance[0].sum() < box[0].sum()
    vqa = pack.nodes.helpers.FocusVQA().run(pack_planted, images, "Where is the red square?", 2, "", "red",
                                            mask_shape="relevance")
    assert bool((vqa[1] == relevance[0]).all())
    (to_mask,) = pack.nodes.helpers.FocusROIsToMask().to_mask(relevance[6], "selected", 1, 0, 0, "relevance")
    assert bool((to_mask == relevance[0]).all())
    with pytest.raises(ValueError, match="mask_shape must be one of box, relevance"):
        find.find(pack_planted, images, "red", 2, mask_shape="outline")


def test_find_takes_its_objects_from_a_question_and_refuses_neither(pack, pack_planted, find):
    images = image_batch(1)
    from_question = find.find(pack_planted, images, "", 1, question="Where is the red square?")
    assert json.loads(from_question[4])[0]["rois"]  # the model named the objects, and they were searched
    with pytest.raises(pack.focus_engine.errors.FocusInputError, match="objects to find"):
        find.find(pack_planted, images, "  ", 1, question="")
