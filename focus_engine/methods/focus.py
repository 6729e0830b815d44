"""FocusPipeline: FOCUS as a method, the four stages end to end.

image + question -> targets -> relevance maps -> ROIs -> ranked ROIs -> answer.
Each stage is one function in its own module, the same one the ComfyUI node
of that stage calls; the run skeleton (checked inputs, resolved config,
clock, memory, the cost rule) is ``methods.base.Method``'s. With the gate on
(``gate_threshold``), the plain answer is decoded first and stands when it
is confident enough (``gate.open_gate``); the search then reads its maps
from that same prefill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..answer import answer_question, select_rois
from ..gate import GateDecision, open_gate
from ..grid import RelevanceMap
from ..prompts import format_question, question_prompt
from ..ranking import rank_rois
from ..reading import parse_option
from ..relevance import relevance_maps
from ..rois import ROI, propose_for_maps
from ..targets import find_targets
from .base import Method, MethodResult, Run


@dataclass(kw_only=True)
class FocusResult(MethodResult):
    question_type: int = 1
    target_source: str = "none"
    relevance: dict[str, RelevanceMap] = field(default_factory=dict)
    rois: list[ROI] = field(default_factory=list)
    """Every proposal, ranked (verified ones by confidence first)."""
    selected: list[ROI] = field(default_factory=list)
    """The ROIs the answer looked at."""
    answer_view: dict[str, Any] = field(default_factory=lambda: {"mode": "full", "boxes": []})
    gate: dict[str, Any] | None = None
    """The gate's decision and confidence (None when the gate is off)."""

    @property
    def regions(self) -> list[tuple[int, int, int, int]]:
        return [r.box for r in self.selected]

    def describe(self) -> list[tuple[str, str]]:
        lines = [("targets", f"{', '.join(self.targets)} (type-{self.question_type}, from {self.target_source})")]
        lines += [("note", note) for note in self.notes]
        if self.gate is not None:
            verdict = "the plain answer stands, no search" if self.gate["decision"] == "answered" else "searched"
            lines.append(("gate", f"{self.gate['signal']} confidence {self.gate['confidence']:.3f} vs threshold "
                                  f"{self.gate['threshold']}: {verdict} (plain answer {self.gate['plain_answer']!r})"))
        for roi in self.selected:
            conf = "unverified" if roi.confidence is None else f"confidence {roi.confidence:.2f}"
            lines.append(("ROI", f"{roi.target}: box {list(roi.box)} (relevance {roi.score:.2f}, {conf})"))
        return lines

    def _json_fields(self) -> dict[str, Any]:
        return {
            "question_type": self.question_type, "target_source": self.target_source,
            "relevance": {t: m.to_json() for t, m in self.relevance.items()},
            "rois": [r.to_json() for r in self.rois], "selected": [r.to_json() for r in self.selected],
            "answer_view": self.answer_view, "gate": self.gate,
        }

    def _record_fields(self) -> dict[str, Any]:
        return {
            "target_source": self.target_source, "question_type": self.question_type,
            "verified": sum(1 for r in self.rois if r.confidence is not None),
            "ranked_boxes": [list(r.box) for r in self.rois], "selected_boxes": [list(r.box) for r in self.selected],
            "answer_view": self.answer_view.get("mode"), "gate": self.gate,
        }


class FocusPipeline(Method):
    """``FocusPipeline(mllm, FocusConfig(...)).run(image, question)``."""

    name = "focus"

    def answer(self, run: Run) -> FocusResult:
        config, shared, gate = run.config, None, None
        keys = config.layers if config.source == "keys" else None
        if config.gate_threshold is not None:  # 0. the plain answer first: does it stand?
            gate = open_gate(run.mllm, run.image, run.question, run.options, config, capture_keys=keys,
                             should_stop=run.should_stop, stage=run.stage)
            run.clock.assign("prefill", "answer" if gate.answered else "gate")
            run.say(f"gate: {gate.signal} confidence {gate.confidence:.3f} (threshold {gate.threshold})")
            if gate.answered:
                return self.plain(run, gate)
            shared = gate.prefill
        elif config.map_prompt == "question":  # the maps from the answer prompt's own prefill
            with run.stage("relevance"):
                shared = run.mllm.prefill_answer(run.image, format_question(run.question, run.options),
                                                 capture_keys=keys)
        return self.search(run, shared, gate)

    def search(self, run: Run, shared: Any, gate: GateDecision | None, answering: bool = True) -> FocusResult:
        """The four stages; ``shared``: the answer prompt's prefill to read
        the question's targets' maps from (``map_prompt="question"``), or None;
        ``answering=False``: the first three only (``FocusFind``)."""
        mllm, config, image = run.mllm, run.config, run.image
        with run.stage("targets"):  # 1. which objects the question needs
            found = find_targets(mllm, run.question, run.targets, config, run.should_stop)
        run.say(f"targets: {', '.join(found.names)} (type-{found.question_type}, {found.source})")
        with run.stage("relevance"):  # 2. one relevance map per target
            prefilled = {}
            if shared is not None and config.map_prompt == "question":
                prefilled = mllm.answer_target_prefills(shared, question_prompt(run.question, run.options, found.names))
            shared = None  # the targets' prefills keep what they need of its cache
            maps = relevance_maps(mllm, image, found.names, config, prefilled=prefilled, should_stop=run.should_stop,
                                  on_map=lambda i, t: run.say(f"relevance map {i + 1}/{len(found.names)}: {t}"))
        with run.stage("rois"):  # 3a. candidate regions around the maps' peaks
            proposals = propose_for_maps(maps.values(), config)
        run.say(f"proposed {len(proposals)} ROIs")
        with run.stage("ranking"):  # 3b. verified by yes/no on their crops
            run.check_stop()
            ranked = rank_rois(mllm, image, proposals, config, should_stop=run.should_stop,
                               progress=lambda step, total: run.say(f"verification step {step}"),
                               verify_all=found.question_type == 2)
        selected = select_rois(ranked, found.question_type, config)
        text, option, view = "", None, {"mode": "none", "boxes": []}
        if answering:
            with run.stage("answer"):  # 4. answered on the chosen region(s)
                run.check_stop()
                answer = answer_question(mllm, image, run.question, run.options, selected, config,
                                         should_stop=run.should_stop, question_type=found.question_type)
            text, option, view = answer.text, answer.option, answer.view.to_json()
        return self.result(
            run, text, option, FocusResult, targets=list(found.names),
            question_type=found.question_type, target_source=found.source, relevance=maps, rois=ranked,
            selected=selected, answer_view=view, notes=[found.note] if found.note else [],
            gate=gate.to_json() if gate is not None else None)

    def plain(self, run: Run, gate: GateDecision) -> FocusResult:
        """The gate answered: the plain answer on the whole image stands."""
        return self.result(run, gate.plain_answer, parse_option(gate.plain_answer, run.options), FocusResult,
                           gate=gate.to_json())


class FocusFind(FocusPipeline):
    """Where the objects are, without an answer: FOCUS's targets, maps, ROIs
    and their verification, and the ROIs an answer would look at as
    ``selected`` (its regions), each with its verification confidence. The
    objects come as ``targets`` (no model call) or from the question; the
    answer is empty. "Mask the red car" needs no answer to pay for."""

    name = "focus-find"

    def answer(self, run: Run) -> FocusResult:
        return self.search(run, None, None, answering=False)


__all__ = ["FocusFind", "FocusPipeline", "FocusResult"]
