"""FocusPipeline: the four FOCUS stages end to end, with cost accounting.

image + question -> targets -> relevance maps -> ROIs -> ranked ROIs -> answer.
Each stage is a function in its own module; this class only wires them and
measures forward passes, time per stage and peak memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .answer import Answer, answer_question, check_options, check_question, select_rois
from .config import FocusConfig
from .cost import Cost, PeakMemory, StageClock
from .grid import RelevanceMap
from .images import to_pil_rgb
from .ranking import rank_rois
from .rois import ROI, propose_rois_for_config
from .targets import Targets, extract_targets, given_targets

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
        }


class FocusPipeline:
    """``FocusPipeline(mllm, FocusConfig(...)).run(image, question)``."""

    def __init__(self, mllm: Any, config: FocusConfig | None = None) -> None:
        self.mllm = mllm
        self.config = config or FocusConfig()

    def resolved_config(self) -> FocusConfig:
        return self.config.resolved(self.mllm.family_defaults())

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
        question = check_question(question)
        options = check_options(options)
        pil = to_pil_rgb(image)
        config = self.resolved_config()
        self.mllm.apply_config(config)
        config.layers = self.mllm.resolve_layers(config.layers, config.layer_fraction)
        say = progress or (lambda message: None)

        def check_stop() -> None:
            if should_stop is not None and should_stop():
                raise InterruptedError("FOCUS run interrupted")

        clock = StageClock(self.mllm.counter)
        started = time.perf_counter()
        with PeakMemory(self.mllm.device) as memory:
            with clock.stage("targets"):
                found: Targets = (
                    given_targets(targets) if targets else extract_targets(self.mllm, question, config, should_stop)
                )
            say(f"targets: {', '.join(found.targets)} (type-{found.question_type}, {found.source})")
            relevance: dict[str, RelevanceMap] = {}
            with clock.stage("relevance"):
                for index, target in enumerate(found.targets):
                    check_stop()
                    relevance[target] = self.mllm.relevance_map(
                        pil, target, layers=config.layers, source=config.source, config=config
                    )
                    say(f"relevance map {index + 1}/{len(found.targets)}: {target}")
            with clock.stage("rois"):
                proposals = [roi for t in found.targets for roi in propose_rois_for_config(relevance[t], config)]
            say(f"proposed {len(proposals)} ROIs")
            with clock.stage("ranking"):
                check_stop()
                ranked = rank_rois(
                    self.mllm, pil, proposals, config,
                    progress=lambda step, total: say(f"verification step {step}"),
                    should_stop=should_stop,
                )
            with clock.stage("answer"):
                check_stop()
                selected = select_rois(ranked, found.question_type, config)
                answer: Answer = answer_question(
                    self.mllm, pil, question, options, selected, config, should_stop=should_stop
                )
            say(f"answer: {answer.text}")
        cost = Cost(
            forward_passes=clock.forward_passes.get("relevance", 0) + clock.forward_passes.get("ranking", 0),
            seconds=time.perf_counter() - started,
            peak_memory_bytes=memory.peak,
            peak_memory_kind=memory.kind,
            stage_seconds=dict(clock.seconds),
            stage_forward_passes=dict(clock.forward_passes),
            generate_calls=clock.generate_calls,
        )
        notes = [found.note] if found.note else []
        return FocusResult(
            question=question,
            options=options,
            answer=answer.text,
            answer_option=answer.option,
            targets=list(found.targets),
            question_type=found.question_type,
            target_source=found.source,
            relevance=relevance,
            rois=ranked,
            selected=selected,
            cost=cost,
            image_size=pil.size,
            answer_view=answer.view.to_json(),
            notes=notes,
            config=config.to_dict(),
            family=self.mllm.family,
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
