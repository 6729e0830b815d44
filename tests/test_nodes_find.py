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


def test_find_takes_its_objects_from_a_question_and_refuses_neither(pack, pack_planted, find):
    images = image_batch(1)
    from_question = find.find(pack_planted, images, "", 1, question="Where is the red square?")
    assert json.loads(from_question[4])[0]["rois"]  # the model named the objects, and they were searched
    with pytest.raises(pack.focus_engine.errors.FocusInputError, match="objects to find"):
        find.find(pack_planted, images, "  ", 1, question="")
