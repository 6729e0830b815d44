"""FocusPipeline: the four FOCUS stages end to end, with cost accounting.

image + question -> targets -> relevance maps -> ROIs -> ranked ROIs -> answer.
Each stage is one function in its own module, the same one the ComfyUI node
of that stage calls; ``FocusPipeline.run`` checks the inputs once, resolves
the config once, calls the stages in order and measures forward passes, time
per stage and peak memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .answer import answer_question, parse_option, select_rois
from .config import FocusConfig, resolve_config
from .cost import Cost, PeakMemory, StageClock
from .gate import GateDecision, decide
from .grid import RelevanceMap
from .images import to_pil_rgb
from .inputs import check_options, check_question
from .prompts import format_question, question_prompt
from .ranking import rank_rois
from .relevance import relevance_maps
from .rois import ROI, propose_for_maps
from .targets import find_targets

ProgressFn = Callable[[str], None]


@dataclass
class FocusResult:
    question: str
    options: list[str] | None
    answer: str
    answer_option: str | None
    targets: list[str]
    question_type: int
    target_source: str
    relevance: dict[str, RelevanceMap]
    rois: list[ROI]
    selected: list[ROI]
    cost: Cost
    image_size: tuple[int, int]
    answer_view: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    family: str = ""
    gate: dict[str, Any] | None = None
    """The gate's decision and confidence (None when the gate is off)."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only (maps as their grids)."""
        return {
            "question": self.question,
            "options": self.options,
            "answer": self.answer,
            "answer_option": self.answer_option,
            "targets": list(self.targets),
            "question_type": self.question_type,
            "target_source": self.target_source,
            "image_size": list(self.image_size),
            "family": self.family,
            "relevance": {t: m.to_json() for t, m in self.relevance.items()},
            "rois": [r.to_json() for r in self.rois],
            "selected": [r.to_json() for r in self.selected],
            "answer_view": self.answer_view,
            "cost": self.cost.to_json(),
            "notes": list(self.notes),
            "config": _jsonable(self.config),
            "gate": self.gate,
        }


class FocusPipeline:
    """``FocusPipeline(mllm, FocusConfig(...)).run(image, question)``."""

    def __init__(self, mllm: Any, config: FocusConfig | None = None) -> None:
        self.mllm = mllm
        self.config = config or FocusConfig()

    def resolved_config(self) -> FocusConfig:
        """The config a run uses on this model (family defaults filled in)."""
        return resolve_config(self.mllm, self.config)

    def run(
        self,
        image: Any,
        question: str,
        options: Sequence[str] | None = None,
        targets: Sequence[str] | str | None = None,
        *,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> FocusResult:
        """Answer ``question`` about ``image`` with FOCUS.

        ``targets`` skips the model's target extraction (``"all cars"`` makes
        the question type-2). ``progress`` receives one line per stage;
        ``should_stop`` is polled between model calls (raises InterruptedError).
        """
        question, options, pil = check_question(question), check_options(options), to_pil_rgb(image)
        config = self.resolved_config()
        mllm = self.mllm
        say = progress or (lambda message: None)

        def check_stop() -> None:
            if should_stop is not None and should_stop():
                raise InterruptedError("FOCUS run interrupted")

        clock = StageClock(mllm.counter)
        started = time.perf_counter()
        gate: GateDecision | None = None
        with PeakMemory(mllm.device) as memory:
            shared = None  # 0. the plain answer's prefill, when the gate or the maps read it
            if config.gate_threshold is not None or config.map_prompt == "question":
                with clock.stage("gate" if config.gate_threshold is not None else "relevance"):
                    keys = config.layers if config.source == "keys" else None
                    shared = mllm.prefill_answer(pil, format_question(question, options), capture_keys=keys)
                    if config.gate_threshold is not None:
                        gate = decide(mllm, pil, question, shared, config, should_stop)
                        say(f"gate: {gate.signal} confidence {gate.confidence:.3f} (threshold {gate.threshold})")
            if gate is None or not gate.answered:
                with clock.stage("targets"):  # 1. which objects the question needs
                    found = find_targets(mllm, question, targets, config, should_stop)
                say(f"targets: {', '.join(found.names)} (type-{found.question_type}, {found.source})")
                with clock.stage("relevance"):  # 2. one relevance map per target
                    prefilled = {}
                    if shared is not None and config.map_prompt == "question":
                        prefilled = mllm.answer_target_prefills(shared, question_prompt(question, options, found.names))
                    shared = None  # the targets' prefills keep what they need of its cache
                    maps = relevance_maps(mllm, pil, found.names, config, prefilled=prefilled, should_stop=should_stop,
                                          on_map=lambda i, t: say(f"relevance map {i + 1}/{len(found.names)}: {t}"))
                with clock.stage("rois"):  # 3a. candidate regions around the maps' peaks
                    proposals = propose_for_maps(maps.values(), config)
                say(f"proposed {len(proposals)} ROIs")
                with clock.stage("ranking"):  # 3b. verified by yes/no on their crops
                    check_stop()
                    ranked = rank_rois(mllm, pil, proposals, config, should_stop=should_stop,
                                       progress=lambda step, total: say(f"verification step {step}"))
                with clock.stage("answer"):  # 4. answered on the chosen region(s)
                    check_stop()
                    selected = select_rois(ranked, found.question_type, config)
                    answer = answer_question(mllm, pil, question, options, selected, config, should_stop=should_stop)
        cost = Cost.from_clock(clock, time.perf_counter() - started, memory)
        if gate is not None and gate.answered:
            # the gate's prefill was the answer's own, not a search pass (the answerable question is one)
            cost.forward_passes -= 1
            say(f"answer (whole image): {gate.plain_answer}")
            return FocusResult(
                question=question, options=options, answer=gate.plain_answer,
                answer_option=parse_option(gate.plain_answer, options), targets=[], question_type=1,
                target_source="none", relevance={}, rois=[], selected=[], cost=cost, image_size=pil.size,
                answer_view={"mode": "full", "boxes": []}, config=config.to_dict(), family=mllm.family,
                gate=gate.to_json(),
            )
        say(f"answer: {answer.text}")
        return FocusResult(
            question=question,
            options=options,
            answer=answer.text,
            answer_option=answer.option,
            targets=list(found.names),
            question_type=found.question_type,
            target_source=found.source,
            relevance=maps,
            rois=ranked,
            selected=selected,
            cost=cost,
            image_size=pil.size,
            answer_view=answer.view.to_json(),
            notes=[found.note] if found.note else [],
            config=config.to_dict(),
            family=mllm.family,
            gate=gate.to_json() if gate is not None else None,
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
