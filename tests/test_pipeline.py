"""FocusPipeline end to end through the public API, ranking, answering, cost."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from helpers import scene
from focus_engine import FocusConfig, FocusPipeline
from focus_engine.answer import compose_view, select_rois
from focus_engine.prompts import format_question
from focus_engine.ranking import rank_rois
from focus_engine.rois import ROI

BOX = (2000, 200, 2140, 340)


@pytest.fixture(scope="module")
def image():
    return scene((2400, 1200), BOX, seed=4)


class ForwardCounter:
    """Counts model.forward calls and the samples in each (a forward pre-hook)."""

    def __init__(self, model):
        self.batches: list[int] = []
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        self.batches.append(int(ids.shape[0]) if ids is not None else 1)

    def close(self):
        self.handle.remove()


def test_public_api_result(planted, image):
    pipe = FocusPipeline(planted, FocusConfig(n_steps=4, verify_stop=None))
    res = pipe.run(image, "What colour is the square?", options=["red", "blue", "green", "white"])
    assert isinstance(res.answer, str)
    assert res.targets and all(isinstance(t, str) for t in res.targets)
    assert res.question_type in (1, 2)
    assert set(res.relevance) == set(res.targets)
    assert res.rois and res.selected
    for roi in res.rois:
        x0, y0, x1, y1 = roi.box
        assert all(isinstance(v, int) for v in roi.box)
        assert 0 <= x0 < x1 <= 2400 and 0 <= y0 < y1 <= 1200
        assert roi.target in res.targets and 0.0 <= roi.score <= 1.0
    verified = [r.confidence for r in res.rois if r.confidence is not None]
    assert len(verified) >= min(4, len(res.rois)) and all(0.0 <= c <= 1.0 for c in verified)
    assert res.cost.forward_passes >= len(res.targets) + len(verified)
    assert res.cost.seconds > 0 and res.cost.peak_memory_bytes > 0
    data = json.loads(json.dumps(res.to_json()))
    assert data["answer"] == res.answer and len(data["rois"]) == len(res.rois)


@pytest.mark.parametrize("reuse", [False, True])
def test_forward_passes_are_counted_where_the_model_runs(planted, image, reuse):
    counter = ForwardCounter(planted.model)
    try:
        res = FocusPipeline(planted, FocusConfig(n_steps=3, overrun=False, extent_floor=None, verify_stop=None,
                                                 reuse_prefixes=reuse)).run(
            image, "Where is the red square?", targets=["red", "blue"]
        )
    finally:
        counter.close()
    if reuse:  # the image prefilled once, both targets continued from it; the crops in one call as before
        # (two targets: the answer looks at their union, a new image, so no crop's prefill is kept for it)
        assert counter.batches[:3] == [1, 2, 6]
    else:  # relevance: the two targets' prefills in one call; ranking: one batch of 3 crops x 2 targets
        assert counter.batches[:2] == [2, 6]
    assert res.cost.forward_passes == 2 + 6  # one pass per prompt either way
    assert res.cost.stage_forward_passes["relevance"] == 2
    assert res.cost.stage_forward_passes["ranking"] == 6
    assert sum(1 for r in res.rois if r.confidence is not None) == 6


def test_relevance_prefills_share_forward_calls_up_to_the_batch_size(planted, image):
    counter = ForwardCounter(planted.model)
    try:
        res = FocusPipeline(planted, FocusConfig(n_steps=1, overrun=False, relevance_batch_size=2)).run(
            image, "Where is the red square?", targets=["red", "blue", "green"]
        )
    finally:
        counter.close()
    # the image prefilled once; two prompts continued in one call, the third from the same prefill
    assert counter.batches[:3] == [1, 2, 1] and res.cost.forward_passes == 3  # one pass per prompt, as the paper counts
    # a map from a batch of prompts (left padded) equals the map from its prompt alone
    alone = planted.relevance_map(image, "blue")
    np.testing.assert_allclose(res.relevance["blue"].grid, alone.grid, atol=1e-5)


def test_same_input_twice_gives_same_rois(planted, image):
    pipe = FocusPipeline(planted, FocusConfig(n_steps=2))
    first = pipe.run(image, "Where is the red square?", targets=["red square"])
    second = pipe.run(image, "Where is the red square?", targets=["red square"])
    assert [r.box for r in first.rois] == [r.box for r in second.rois]
    assert [r.confidence for r in first.rois] == [r.confidence for r in second.rois]
    np.testing.assert_array_equal(first.relevance["red square"].grid, second.relevance["red square"].grid)


def test_no_ranking_ablation_skips_verification(planted, image):
    res = FocusPipeline(planted, FocusConfig(n_steps=1, overrun=False)).run(image, "Where?", targets=["red"])
    assert all(r.confidence is None for r in res.rois)
    assert res.cost.forward_passes == 1
    assert res.selected[0].box[0] <= 2070 < res.selected[0].box[2]


class FakeVerifier:
    """Stands in for the model's yes/no head: says Yes only for listed boxes."""

    family = "fake"

    def __init__(self, yes_boxes):
        self.yes_boxes = set(yes_boxes)
        self.calls: list[list[str]] = []
        self.hints: list[bool] = []

    def yes_no_confidence(self, images, targets, batch_size=8, should_stop=None, answer_hint=True, keep_prefixes=True):
        self.calls.append(list(targets))
        self.hints.append(answer_hint)
        return np.array([0.9 if getattr(im, "focus_box", None) in self.yes_boxes else 0.1 for im in images])


def _rois(target, n):
    return [ROI(box=(i * 50, 0, i * 50 + 40, 40), target=target, score=1.0 - i / 100) for i in range(n)]


def _tagging_crop(monkeypatch):
    """Make ranking's crops remember their box, so the fake verifier can answer per box."""
    import focus_engine.ranking as ranking

    def tagged(image, box):
        out = image.crop(box)
        out.focus_box = tuple(box)
        return out

    monkeypatch.setattr(ranking, "crop", tagged)


def test_overrun_verifies_until_a_yes(monkeypatch):
    from PIL import Image

    _tagging_crop(monkeypatch)
    rois = _rois("cat", 12)
    fake = FakeVerifier({rois[6].box})
    ranked = rank_rois(fake, Image.new("RGB", (700, 100)), rois, FocusConfig(n_steps=4, max_overrun=5, verify_stop=None, overrun=True))
    # step 1: four ROIs in one batch; then one more per step until ROI 6 says yes
    assert [len(c) for c in fake.calls] == [4, 1, 1, 1]
    assert ranked[0].box == rois[6].box and ranked[0].confidence == pytest.approx(0.9)
    assert sum(r.confidence is not None for r in ranked) == 7
    assert all(r.confidence is None for r in rois)  # input untouched


def test_overrun_is_bounded(monkeypatch):
    from PIL import Image

    _tagging_crop(monkeypatch)
    fake = FakeVerifier(set())
    ranked = rank_rois(fake, Image.new("RGB", (700, 100)), _rois("cat", 12), FocusConfig(n_steps=2, max_overrun=3, verify_stop=None,
                                                                                            overrun=True))
    assert sum(len(c) for c in fake.calls) == 5
    assert sum(r.confidence is not None for r in ranked) == 5


def test_the_papers_overrun_goes_on_until_a_yes_or_no_roi_is_left(monkeypatch):
    """``max_overrun=None`` (the paper preset): past the cap of 8, bounded by
    the target's proposals; the question asked without "Answer Yes or No."."""
    from PIL import Image

    _tagging_crop(monkeypatch)
    rois = _rois("cat", 14)
    fake = FakeVerifier({rois[12].box})
    config = FocusConfig(n_steps=2, max_overrun=None, verify_stop=None, overrun=True, n_anchors=30,
                         verify_answer_hint=False)
    ranked = rank_rois(fake, Image.new("RGB", (700, 100)), rois, config)
    assert [len(c) for c in fake.calls] == [2] + [1] * 11 and ranked[0].box == rois[12].box  # 10 beyond the cap of 8
    assert set(fake.hints) == {False}
    fake = FakeVerifier(set())
    rank_rois(fake, Image.new("RGB", (700, 100)), rois, config)
    assert sum(len(c) for c in fake.calls) == 14  # every proposal, then no more
    fake = FakeVerifier(set())
    rank_rois(fake, Image.new("RGB", (700, 100)), rois, dataclasses.replace(config, max_overrun=8))
    assert sum(len(c) for c in fake.calls) == 10 and set(fake.hints) == {False}


def test_the_verification_question_with_and_without_its_hint(planted):
    from focus_engine.prompts import verification_prompt

    asked = []
    real = planted.yes_probability

    def spy(prompts, **kwargs):
        asked.extend(text for _, text in prompts)
        return real(prompts, **kwargs)

    image = scene((336, 336), (100, 100, 200, 200))
    planted.yes_probability = spy
    try:
        with_hint = planted.yes_no_confidence([image], ["red"])
        without = planted.yes_no_confidence([image], ["red"], answer_hint=False)
    finally:
        del planted.yes_probability
    assert asked == ["Is there a red in the image? Answer Yes or No.", "Is there a red in the image?"]
    assert verification_prompt("red", False) == "Is there a red in the image?"
    assert all(0.0 <= float(c[0]) <= 1.0 for c in (with_hint, without))


def test_one_batch_per_step_across_targets(monkeypatch):
    from PIL import Image

    _tagging_crop(monkeypatch)
    fake = FakeVerifier(set())
    rois = _rois("cat", 3) + _rois("dog", 3)
    rank_rois(fake, Image.new("RGB", (700, 100)), rois, FocusConfig(n_steps=3, overrun=False, verify_stop=None))
    assert fake.calls == [["cat"] * 3 + ["dog"] * 3]


def test_verification_stops_once_a_crop_is_sure(monkeypatch):
    """verify_stop: one ROI per target per step, in relevance order, until one
    reaches it; a target that is sure stops, the others go on."""
    from PIL import Image

    _tagging_crop(monkeypatch)
    cats, dogs = _rois("cat", 8), [ROI(box=(i * 50, 50, i * 50 + 40, 90), target="dog", score=0.5) for i in range(8)]
    fake = FakeVerifier({cats[1].box, dogs[0].box})  # 0.9 there, 0.1 elsewhere
    ranked = rank_rois(fake, Image.new("RGB", (700, 100)), cats + dogs,
                       FocusConfig(n_steps=4, verify_stop=0.8, max_overrun=2))
    assert fake.calls == [["cat", "dog"], ["cat"]]
    assert ranked[0].box == cats[1].box and ranked[0].confidence == pytest.approx(0.9)
    assert sum(r.confidence is not None for r in ranked) == 3


def test_verification_stop_keeps_n_steps_as_the_cap_then_overruns(monkeypatch):
    from PIL import Image

    _tagging_crop(monkeypatch)
    fake = FakeVerifier(set())
    rank_rois(fake, Image.new("RGB", (700, 100)), _rois("cat", 12), FocusConfig(n_steps=3, verify_stop=0.8,
                                                                                 max_overrun=2, overrun=True))
    assert fake.calls == [["cat"]] * 5  # three within n_steps, two of overrun
    fake = FakeVerifier(set())
    rank_rois(fake, Image.new("RGB", (700, 100)), _rois("cat", 12), FocusConfig(n_steps=3, verify_stop=0.8,
                                                                                 overrun=False))
    assert fake.calls == [["cat"]] * 3


def test_type2_selects_every_confident_roi():
    rois = [
        ROI(box=(0, 0, 10, 10), target="car", score=0.9, confidence=0.95),
        ROI(box=(5, 5, 15, 15), target="car", score=0.8, confidence=0.7),
        ROI(box=(100, 100, 110, 110), target="car", score=0.7, confidence=0.2),
    ]
    config = FocusConfig(type2_threshold=0.6)
    assert select_rois(rois, 2, config) == rois[:2]
    assert select_rois(rois, 1, config) == rois[:1]


def test_far_apart_targets_go_on_a_canvas():
    from PIL import Image

    image = Image.new("RGB", (4000, 3000), (10, 20, 30))
    near = [ROI(box=(100, 100, 300, 300), target="a", score=1), ROI(box=(400, 100, 600, 300), target="b", score=1)]
    view = compose_view(image, near, FocusConfig())
    assert view.mode == "crop" and view.boxes == [(100, 100, 600, 300)] and view.image.size == (500, 200)
    far = [ROI(box=(0, 0, 200, 200), target="a", score=1), ROI(box=(3700, 2800, 3900, 3000), target="b", score=1)]
    view = compose_view(image, far, FocusConfig(far_apart_px=1200))
    assert view.mode == "canvas" and len(view.boxes) == 2
    assert max(view.image.size) <= 1200 + 200 and view.image.size[0] >= 400


def test_far_apart_by_distance_and_counting_on_a_canvas():
    """The paper preset's answer view: regions far apart by their centres'
    distance (not the union's size), a counting question's regions on a canvas."""
    from PIL import Image

    image = Image.new("RGB", (4000, 3000), (10, 20, 30))
    # two long boxes side by side: a union of 1400 px, centres 200 px apart
    long = [ROI(box=(0, 0, 1400, 100), target="a", score=1), ROI(box=(0, 200, 1400, 300), target="b", score=1)]
    assert compose_view(image, long, FocusConfig()).mode == "canvas"
    assert compose_view(image, long, FocusConfig(far_apart_measure="distance")).mode == "crop"
    near = [ROI(box=(100, 100, 300, 300), target="car", score=1), ROI(box=(400, 100, 600, 300), target="car", score=1)]
    counting = FocusConfig(count_on_canvas=True)
    assert compose_view(image, near, counting, question_type=1).mode == "crop"
    view = compose_view(image, near, counting, question_type=2)
    assert view.mode == "canvas" and view.boxes == [(100, 100, 300, 300), (400, 100, 600, 300)]
    assert compose_view(image, near, FocusConfig(), question_type=2).mode == "crop"


def test_multiple_choice_formatting():
    text = format_question("What colour?", ["red", "blue"])
    assert text.splitlines()[1:3] == ["A. red", "B. blue"] and "letter" in text


def test_maps_from_the_question_prompt_and_existence_for_the_rest(planted, image):
    """map_prompt="question": a target the question names is read from the
    answer prompt's own prefill; a target it does not name gets the
    existence prompt (two forward calls of one prompt each)."""
    counter = ForwardCounter(planted.model)
    try:
        res = FocusPipeline(planted, FocusConfig(map_prompt="question", n_steps=1, overrun=False)).run(
            image, "What is on the red square?", options=["a cat", "a dog"], targets=["red square", "blue"]
        )
    finally:
        counter.close()
    assert counter.batches[:2] == [1, 1] and res.cost.forward_passes == 2
    assert res.relevance["red square"].tokens == ("red", "square")
    assert covers(res.relevance["red square"].peak_box(), BOX) and covers(res.selected[0].box, BOX)
    existence = FocusPipeline(planted, FocusConfig(n_steps=1, overrun=False)).run(
        image, "What is on the red square?", options=["a cat", "a dog"], targets=["red square", "blue"])
    assert existence.relevance["red square"].peak_cell() == res.relevance["red square"].peak_cell()


def covers(box, target) -> bool:
    return box[0] < target[2] and target[0] < box[2] and box[1] < target[3] and target[1] < box[3]


def test_the_gate_answers_plainly_when_confident_and_searches_when_not(planted, image):
    from focus_engine.methods.vanilla import Vanilla

    question, options = "What colour is the square?", ["red", "blue", "green", "white"]
    plain = Vanilla(planted, FocusConfig()).run(image, question, options)
    answered = FocusPipeline(planted, FocusConfig(gate_threshold=0.0)).run(image, question, options=options)
    assert answered.gate["decision"] == "answered" and answered.answer == plain.answer == answered.gate["plain_answer"]
    assert answered.rois == [] and answered.targets == [] and answered.cost.forward_passes == 0
    assert answered.answer_view == {"mode": "full", "boxes": []} and answered.to_json()["gate"]["signal"] == "answer"
    searched = FocusPipeline(planted, FocusConfig(gate_threshold=1.0, n_steps=1, overrun=False,
                                                  map_prompt="question")).run(image, question, options=options,
                                                                                  targets=["red"])
    assert searched.gate["decision"] == "searched" and searched.gate["confidence"] < 1.0 and searched.rois
    assert searched.cost.forward_passes == 2  # the answer prompt's prefill (the gate) + red's existence prefill
    answerable = FocusPipeline(planted, FocusConfig(gate_threshold=0.0, gate_signal="answerable")).run(
        image, question, options=options)
    assert answerable.gate["signal"] == "answerable" and answerable.cost.forward_passes == 1  # its own question
    assert FocusPipeline(planted, FocusConfig()).run(image, question, options=options, targets=["red"]).gate is None
