"""Each image prefilled once (mllm/prefixes.py), checked on every family:
what goes on from a shared image prefix equals what the whole prompt gives.

On full-strength random models of each family (their folders: ``undamped``
in families.py): the relevance maps of several targets continued from one
prefill of the image equal their whole prompts' maps; the gate's answer
prefill leaves the image for the relevance prompts, which then map as
without it; verification through the crops' prefixes gives the same
confidences and keeps the surest crop per question; the answer decoded on
from that crop's prefix is the reply to the whole prompt, token by token;
the target reply decoded on from the worked examples' prefill is the reply
without it. End to end on the planted models: FOCUS with reuse on and off
gives the same answer, boxes and selected crop, with maps and confidences
equal to float tolerance and the same forward passes; the prefixes live
for one question only.
"""

from __future__ import annotations

import numpy as np
import pytest

from families import FAMILY
from helpers import scene
from focus_engine import FocusConfig, FocusPipeline, load_mllm, resolve_config
from focus_engine.images import crop
from focus_engine.prompts import existence_prompt, format_question
from focus_engine.relevance import relevance_from_prefill
from focus_engine.targets import extract_targets

IMAGE = ((900, 600), (700, 400, 800, 500))
TARGETS = ("red", "blue square with a star")


@pytest.fixture
def undamped(request, family):
    return load_mllm(str(request.getfixturevalue(FAMILY[family].undamped)))


def spy_decoding_on(monkeypatch, mllm) -> list[int]:
    """A list that gets a 1 each time a reply decodes on from a kept prefix."""
    calls: list[int] = []
    original = type(mllm)._decode_from_prefix
    monkeypatch.setattr(type(mllm), "_decode_from_prefix",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    return calls


def maps_of(mllm, image, targets, reuse):
    config = resolve_config(mllm)
    mllm.reuse_prefixes = reuse
    try:
        rows = mllm.prefill_prompts(image, [existence_prompt(t) for t in targets])
    finally:
        mllm.reuse_prefixes = True
    return {t: relevance_from_prefill(row[t], t, config) for t, row in zip(targets, rows)}


def test_targets_continued_from_one_image_prefill_map_as_their_whole_prompts(undamped):
    image = scene(*IMAGE)
    before = undamped.counter.forward_passes
    whole = maps_of(undamped, image, TARGETS, reuse=False)
    passes_whole = undamped.counter.forward_passes - before
    shared = maps_of(undamped, image, TARGETS, reuse=True)
    assert undamped.counter.forward_passes - before - passes_whole == passes_whole == 2  # one pass per prompt
    for target in TARGETS:
        np.testing.assert_allclose(shared[target].grid, whole[target].grid, atol=1e-4)
        np.testing.assert_allclose(shared[target].raw, whole[target].raw, rtol=1e-3, atol=1e-7)
        assert shared[target].tokens == whole[target].tokens
        assert np.unravel_index(shared[target].raw.argmax(), shared[target].raw.shape) == \
            np.unravel_index(whole[target].raw.argmax(), whole[target].raw.shape)


def test_the_gates_answer_prefill_leaves_the_image_for_the_relevance_prompts(undamped):
    image = scene(*IMAGE)
    text = format_question("What colour is the red square?", ["red", "blue"])
    expected_map = maps_of(undamped, image, ["red"], reuse=False)["red"]
    fresh = undamped._decode(undamped.processor_inputs([undamped.view(image)], [undamped.build_prompt(1, text)]),
                             None, 5, None)
    with undamped.question_scope():
        prefill = undamped.prefill_answer(image, text)
        assert len(undamped.prefixes) == 1  # the whole image, kept for the maps
        decoded = undamped.continue_answer(prefill, max_new_tokens=5)
        config = resolve_config(undamped)
        passes = undamped.counter.forward_passes
        calls = []
        hook = undamped.model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(
            any(k.startswith("pixel_values") for k in kwargs)), with_kwargs=True)
        try:
            (row,) = undamped.prefill_prompts(image, [existence_prompt("red")])
        finally:
            hook.remove()
        assert calls == [False] and undamped.counter.forward_passes == passes + 1  # one call, no pixels again
        assert len(undamped.prefixes) == 1  # still kept for the question's next prompts about the image
        continued = relevance_from_prefill(row["red"], "red", config)
    assert decoded.text == fresh.text
    np.testing.assert_allclose(decoded.token_probabilities, fresh.token_probabilities, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(continued.grid, expected_map.grid, atol=1e-4)


def crops_of(image):
    return [crop(image, (600, 300, 900, 600)), crop(image, (0, 0, 300, 300)), crop(image, (650, 350, 850, 560))]


def test_verification_through_prefixes_keeps_the_surest_crop_of_each_question(undamped):
    image = scene(*IMAGE)
    crops = crops_of(image)
    targets = ["red", "red", "blue"]
    plain = undamped.yes_no_confidence(crops, targets)
    with undamped.question_scope():
        kept = undamped.yes_no_confidence(crops, targets)
        questions = sorted(undamped.prefixes.slots)
        surest_red = max(kept[0], kept[1])
        assert len(questions) == 2 and any("red" in q for q in questions)  # one slot per question
        red_slot = next(undamped.prefixes.slots[q] for q in questions if "red" in q)
        assert red_slot.score == pytest.approx(surest_red)
    np.testing.assert_allclose(kept, plain, atol=1e-4)
    assert undamped.prefixes is None  # emptied with the question


def test_the_answer_on_the_verified_crop_goes_on_from_its_prefix(undamped, monkeypatch):
    image = scene(*IMAGE)
    region = crop(image, (600, 300, 900, 600))
    question = format_question("What colour is the square?", ["red", "blue"])
    whole = undamped.reply(question, [region], max_new_tokens=6)
    continued = spy_decoding_on(monkeypatch, undamped)
    with undamped.question_scope():
        undamped.yes_no_confidence([region], ["red"])
        reused = undamped.reply(question, [region], max_new_tokens=6)
        assert len(undamped.prefixes) == 0  # the answer took the crop's prefix
    assert continued == [1]
    assert reused.text == whole.text and len(whole.token_probabilities) > 0
    np.testing.assert_allclose(reused.token_probabilities, whole.token_probabilities, rtol=1e-3, atol=1e-5)


def test_the_target_reply_goes_on_from_the_examples_prefill(undamped):
    config = resolve_config(undamped, FocusConfig(target_max_new_tokens=24))
    question = "Is the red square to the left or to the right of the blue circle?"
    undamped.reuse_prefixes = False
    try:
        alone = extract_targets(undamped, question, config)
    finally:
        undamped.reuse_prefixes = True
    first = extract_targets(undamped, question, config)
    again = extract_targets(undamped, question, config)  # from the examples' prefill kept by the first
    assert len(undamped._text_prefixes) == 1
    assert first.raw == alone.raw == again.raw and first.names == alone.names


@pytest.mark.parametrize("targets,verify_stop", [(["red"], 0.5), (["red"], None), (["red", "blue"], 0.5)])
def test_focus_answers_alike_with_and_without_reuse(request, family, targets, verify_stop, monkeypatch):
    mllm = request.getfixturevalue(FAMILY[family].planted)
    size = (1500, 1000)
    side = FAMILY[family].object_side(size)
    image = scene(size, (1100, 600, 1100 + side, 600 + side), seed=3)
    config = {"n_steps": 3, "verify_stop": verify_stop}
    continued = spy_decoding_on(monkeypatch, mllm)
    results = {reuse: FocusPipeline(mllm, FocusConfig(reuse_prefixes=reuse, **config)).run(
        image, "What colour is the square? (A) red (B) blue", targets=targets) for reuse in (False, True)}
    off, on = results[False], results[True]
    # the answer goes on from a prefill of its image where the question made one: one target's best crop
    # (verified) or the whole image (the maps'); OneVision shows the whole image with the regions drawn first,
    # a new image, and several targets' union is one too
    mode, drawn = on.answer_view["mode"], resolve_config(mllm).answer_with_global
    whole = mode == "full" or on.answer_view["boxes"] == [[0, 0, *size]]  # a crop of all of it is the image
    prefilled = not drawn and (whole or (len(targets) == 1 and mode == "crop"))
    assert continued == ([1] if prefilled else [])
    assert prefilled or len(targets) > 1 or drawn  # the one-target case is exercised on every other family
    assert on.answer == off.answer and on.answer_option == off.answer_option
    assert [r.box for r in on.rois] == [r.box for r in off.rois]
    assert [r.box for r in on.selected] == [r.box for r in off.selected]
    np.testing.assert_allclose([r.confidence or -1 for r in on.rois], [r.confidence or -1 for r in off.rois],
                               atol=1e-4)
    for target in on.relevance:
        np.testing.assert_allclose(on.relevance[target].grid, off.relevance[target].grid, atol=1e-4)
    assert on.cost.forward_passes == off.cost.forward_passes
    assert on.config["reuse_prefixes"] is True and off.config["reuse_prefixes"] is False
    assert mllm.prefixes is None and mllm.reuse_prefixes is True  # nothing outlives the question
