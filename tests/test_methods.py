"""The methods layer: the registry of ways of answering, the run skeleton
they share (checked inputs, the cost rule) and the result base."""

from __future__ import annotations

import json

import pytest

from helpers import scene
from focus_engine.config import FocusConfig
from focus_engine.cost import CallCounter, StageClock, Cost, PeakMemory
from focus_engine.errors import FocusConfigError, FocusInputError
from focus_engine.methods import Method, MethodResult, make_method, method_spec, method_specs
from focus_engine.methods.setup import merged_config
from focus_engine.methods.registry import FIXED

QUESTION, OPTIONS = "What colour is the square?", ["red", "blue", "green", "white"]
FAST = FocusConfig(answer_max_new_tokens=2, max_overrun=1, n_steps=1)


def test_method_names_and_the_fields_they_fix():
    assert dict(method_spec("keys").fixed) == {"source": "keys"}
    assert dict(method_spec("random").fixed) == {"source": "random"}
    assert dict(method_spec("layers:0-14").fixed) == {"layers": (0, 14)}
    no_ranking = method_spec("No-Ranking")
    assert merged_config("llava", no_ranking, budget=8).n_steps == 1 and not no_ranking.sweeps_n_steps
    assert merged_config("llava", "focus", budget=8).n_steps == 8
    assert [m.name for m in method_specs("vanilla, focus,vanilla")] == ["vanilla", "focus"]
    assert not method_spec("zoomeye").sweeps_n_steps and not method_spec("vanilla").sweeps_n_steps
    assert dict(method_spec("focus-shared").fixed) == {"map_prompt": "question"}
    gated = merged_config("llava", "focus-gated:0.25", budget=4)
    assert gated.gate_threshold == 0.25 and gated.map_prompt == "question" and gated.n_steps == 4
    assert merged_config("llava", "focus-gated").map_prompt == "question"  # the gate's rule, one place
    for bad in ("zoom-eye", "focus-gated:x", "focus-gated:1.5", "layers:5-2", ""):
        with pytest.raises(FocusConfigError):
            method_specs(bad)


def test_the_default_stops_verifying_when_sure_and_the_paper_is_one_name_away():
    """The default FOCUS verifies in relevance order and stops at the first
    crop with P(Yes) >= 0.5, n_steps the cap (issue 23); ``focus-full`` and
    ``--preset paper`` verify n_steps at once and overrun until a Yes."""
    default = FocusConfig()
    assert (default.verify_stop, default.overrun, default.target_reply) == (0.5, False, "reasoned")
    assert default.target_lookup_tokens > 0  # exact: the greedy reply in fewer calls
    full = merged_config("llava", "focus-full", budget=4)
    assert (full.verify_stop, full.overrun, full.n_steps) == (None, True, 4)
    paper = merged_config("llava", preset="paper")
    assert (paper.verify_stop, paper.overrun, paper.preset) == (None, True, "paper")


def test_focus_paper_runs_with_the_papers_settings_for_the_family(planted_small):
    image = scene((480, 360), (300, 60, 360, 120), seed=2)
    method = make_method("focus-paper", planted_small, FAST)
    assert method.name == "focus-paper" and method.config.preset == "paper"
    assert method.config.extent_floor is None and method.config.verify_stop is None and method.config.overrun
    cheap = make_method("focus", planted_small, FocusConfig(answer_max_new_tokens=2)).run(image, QUESTION, OPTIONS,
                                                                                         targets=["red"])
    full = make_method("focus-full", planted_small, FocusConfig(answer_max_new_tokens=2)).run(image, QUESTION,
                                                                                             OPTIONS, targets=["red"])
    assert 1 <= cheap.cost.stage_forward_passes["ranking"] <= full.cost.stage_forward_passes["ranking"]
    assert full.cost.stage_forward_passes["ranking"] >= 4  # n_steps at once


@pytest.mark.parametrize("name", sorted(FIXED))
def test_every_method_runs_through_the_skeleton(planted_small, name):
    """Every registered method answers, books its cost by the one rule and
    writes the same record and JSON fields."""
    image = scene((480, 360), (300, 60, 360, 120), seed=2)
    method = make_method(name, planted_small, FAST)
    result = method.run(image, QUESTION, OPTIONS, targets=["red"])
    assert isinstance(result, MethodResult) and result.method == name and result.image_size == (480, 360)
    assert result.answer_option in (None, "A", "B", "C", "D")
    passes = result.cost.stage_forward_passes
    assert result.cost.forward_passes == sum(passes.get(s, 0) for s in ("gate", "relevance", "ranking", "search"))
    assert result.cost.seconds > 0 and result.cost.peak_memory_bytes > 0
    if name == "vanilla":
        assert result.cost.forward_passes == 0 and result.regions == []
    record = result.to_record()
    assert {"answer_text", "forward_passes", "targets", "ranked_boxes", "selected_boxes", "notes"} <= set(record)
    assert record["answer_text"] == result.answer and record["forward_passes"] == result.cost.forward_passes
    assert (record["ranked_boxes"] is None) == (name == "vanilla")
    data = json.loads(json.dumps(result.to_json()))
    assert data["method"] == name and data["answer"] == result.answer and data["config"]["n_steps"] >= 1


def test_focus_find_searches_as_focus_does_and_pays_for_no_answer(planted_small):
    """focus-find runs FOCUS's search up to the verified regions: the same
    ROIs and selection as focus, no answer call, and its gate and map prompt
    are fixed (a finder has no answer prompt to gate or share)."""
    image = scene((480, 360), (300, 60, 360, 120), seed=2)
    found = make_method("focus-find", planted_small, FAST).run(image, QUESTION, OPTIONS, targets=["red"])
    answered = make_method("focus", planted_small, FAST).run(image, QUESTION, OPTIONS, targets=["red"])
    assert found.method == "focus-find" and found.answer == "" and found.answer_option is None
    assert [r.box for r in found.rois] == [r.box for r in answered.rois] and found.regions == answered.regions
    assert [r.confidence for r in found.selected] == [r.confidence for r in answered.selected]
    assert "answer" not in found.cost.stage_seconds and "answer" in answered.cost.stage_seconds
    assert found.cost.forward_passes == answered.cost.forward_passes  # the search is the same
    assert found.answer_view["mode"] == "none" and found.to_record()["selected_boxes"] == [list(found.regions[0])]
    assert dict(method_spec("focus-find").fixed) == {"gate_threshold": None, "map_prompt": "existence"}
    with pytest.raises(FocusConfigError, match="focus-find"):
        merged_config("llava", "focus-find", gate_threshold=0.5)


def test_a_new_method_is_its_middle_only(planted_small):
    """A way of answering fills ``answer(run)``; input checks, the clock and
    the cost come from the skeleton."""

    class AlwaysA(Method):
        name = "always-a"

        def answer(self, run):
            with run.stage("search"):
                run.mllm.counter.forward_passes += 3  # as three model calls would count
            return self.result(run, "A", "A")

    image = scene((320, 240), (10, 10, 60, 60))
    result = AlwaysA(planted_small).run(image, QUESTION, OPTIONS)
    assert result.answer == "A" and result.cost.forward_passes == 3 and result.config["n_steps"] == 4
    with pytest.raises(FocusInputError):
        AlwaysA(planted_small).run(image, "   ")
    with pytest.raises(FocusInputError):
        AlwaysA(planted_small).run(image, QUESTION, options=["only one"])


def test_the_cost_rule_counts_search_stages_and_a_prefill_goes_where_assigned():
    counter = CallCounter()
    clock = StageClock(counter)
    for stage, passes in (("targets", 1), ("prefill", 1), ("gate", 1), ("relevance", 2), ("ranking", 4),
                          ("answer", 1)):
        with clock.stage(stage):
            counter.forward_passes += passes
    searched = StageClock(counter)
    searched.seconds, searched.forward_passes = dict(clock.seconds), dict(clock.forward_passes)
    clock.assign("prefill", "answer")  # the gate answered: the prefill was the answer's
    searched.assign("prefill", "gate")  # the gate searched: the prefill was the search's
    with PeakMemory() as memory:
        pass
    assert Cost.from_clock(clock, 1.0, memory).forward_passes == 7
    assert Cost.from_clock(searched, 1.0, memory).forward_passes == 8
    assert clock.forward_passes["answer"] == 2 and "prefill" not in clock.seconds
