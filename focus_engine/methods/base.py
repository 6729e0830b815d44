"""The run skeleton every way of answering shares, and the result base.

``Method.run`` is transformers' ``Pipeline.run_single`` for VQA methods:
check the inputs (question, options, image), resolve the config for the
model, start the clock and the memory peak, call the method's own middle
(``answer``), then book the cost by the one rule (``cost.SEARCH_STAGES``).
A method fills ``answer(run)`` only; what it hands back is a
``MethodResult`` (or a subclass with its own fields), which knows how it is
written as JSON and as a benchmark record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from PIL import Image

from ..config import FocusConfig, resolve_config
from ..cost import Cost, PeakMemory, StageClock
from ..images import to_pil_rgb
from ..inputs import check_options, check_question, check_text_fits
from ..prompts import format_question
from ..targets import check_extraction_fits

ProgressFn = Callable[[str], None]


@dataclass
class Run:
    """One question being answered: what a method's middle receives."""

    mllm: Any
    image: Image.Image
    """RGB, original size."""
    question: str
    options: list[str] | None
    targets: Sequence[str] | str | None
    """Targets given by the caller (skip target extraction), or None."""
    config: FocusConfig
    """Resolved for the model (family defaults filled in)."""
    clock: StageClock
    say: ProgressFn
    should_stop: Callable[[], bool] | None = None

    def stage(self, name: str) -> Any:
        """Time a stage (``with run.stage("relevance"): ...``)."""
        return self.clock.stage(name)

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise InterruptedError("FOCUS run interrupted")


@dataclass(kw_only=True)
class MethodResult:
    """What every way of answering returns."""

    method: str
    question: str
    options: list[str] | None
    answer: str
    answer_option: str | None
    """The chosen option's letter for multiple-choice questions (else None)."""
    targets: list[str] = field(default_factory=list)
    image_size: tuple[int, int] = (0, 0)
    cost: Cost = field(default_factory=Cost)
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    family: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only."""
        return {
            "method": self.method, "question": self.question, "options": self.options, "answer": self.answer,
            "answer_option": self.answer_option, "targets": list(self.targets), "image_size": list(self.image_size),
            "family": self.family, "cost": self.cost.to_json(), "notes": list(self.notes),
            "config": _jsonable(self.config), **self._json_fields(),
        }

    def to_record(self) -> dict[str, Any]:
        """The fields of a benchmark record this result fills (the bench adds
        the item's own fields, the reading of the answer and the metrics);
        ``ranked_boxes`` / ``selected_boxes`` are None for a method without
        regions."""
        return {
            "answer_text": self.answer, "forward_passes": self.cost.forward_passes, "targets": list(self.targets),
            "notes": list(self.notes), "ranked_boxes": None, "selected_boxes": None, **self._record_fields(),
        }

    @property
    def regions(self) -> list[tuple[int, int, int, int]]:
        """The regions (original pixels) the answer looked at; none when it
        answered on the whole image."""
        return []

    def describe(self) -> list[tuple[str, str]]:
        """What the run found, as (label, text) lines for a person to read."""
        lines = [("targets", ", ".join(self.targets))] if self.targets else []
        return lines + [("note", note) for note in self.notes]

    def _json_fields(self) -> dict[str, Any]:
        """A subclass's own JSON fields."""
        return {}

    def _record_fields(self) -> dict[str, Any]:
        """A subclass's own record fields (they may replace the base's)."""
        return {}


class Method:
    """A way of answering: ``Method(mllm, config).run(image, question, options)``.

    Subclasses set ``name`` and fill ``answer(run)``; the skeleton in ``run``
    is the same for all of them."""

    name = "method"

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
    ) -> Any:
        """Answer ``question`` about ``image`` (PIL, numpy HWC) with this method.

        ``targets`` skips the model's target extraction (``"all cars"`` makes
        the question type-2). ``progress`` receives one line per step;
        ``should_stop`` is polled between model calls (raises InterruptedError).
        """
        question, options, pil = check_question(question), check_options(options), to_pil_rgb(image)
        started = time.perf_counter()
        config = self.resolved_config()
        check_prompts_fit(self.mllm, pil, question, options, config, extracting=not targets)
        run = Run(self.mllm, pil, question, options, targets, config, StageClock(self.mllm.counter),
                  progress or _quiet, should_stop)
        with PeakMemory(self.mllm.device) as memory, self.mllm.question_scope(config.reuse_prefixes):
            result = self.answer(run)
        result.cost = Cost.from_clock(run.clock, time.perf_counter() - started, memory)
        return result

    def answer(self, run: Run) -> MethodResult:
        """The method's own middle: answer ``run.question`` about ``run.image``."""
        raise NotImplementedError

    def result(self, run: Run, answer: str, option: str | None, cls: type = MethodResult, **fields: Any) -> Any:
        """A result of ``cls`` with the fields every run fills, plus ``fields``."""
        return cls(method=self.name, question=run.question, options=run.options, answer=answer, answer_option=option,
                   image_size=run.image.size, config=run.config.to_dict(),
                   family=str(getattr(self.mllm, "family", "")), **fields)


def check_prompts_fit(mllm: Any, image: Image.Image, question: str, options: Sequence[str] | None,
                      config: FocusConfig, *, extracting: bool = True) -> None:
    """Refuse a question (with its options) too long for the model's context
    before any model call: the answer prompt, and, when the model is to
    extract the targets, the text-only extraction prompt. Their text is
    counted here (``check_text_fits``, no pixels: this runs on every
    question); the image's tokens are counted by the adapter on the real
    inputs of each model call."""
    what = "the question with its options" if options else "the question"
    check_text_fits(mllm, format_question(question, options), image, reserve=config.answer_max_new_tokens,
                    what=what)
    if extracting:
        check_extraction_fits(mllm, question, config)


def _quiet(message: str) -> None:
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
