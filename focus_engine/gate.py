"""The adaptive gate [ours]: search only when the whole image is not enough.

The plain answer is decoded from the answer prompt's prefill (the cost of a
plain answer); its confidence decides: at or above the threshold the plain
answer stands and nothing else runs, below it FOCUS searches, reading the
maps of the targets the question names from that same prefill
(``map_prompt="question"``). Two signals:

- ``answer``: how sure the model was of its own answer, the lowest
  probability it gave any token of it (the token that decides the option, for
  "B" as for "the letter B"); no extra forward pass;
- ``answerable``: ZoomEye's answering-confidence question about the whole
  image ("Could you answer the question based on the available visual
  information?"), ``P(Yes)``; one forward pass more.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Sequence

from PIL import Image

from .answer import Answer, AnswerView, answer_question
from .config import FocusConfig
from .errors import check_finite
from .prompts import format_question
from .reading import parse_option

ANSWERABLE_PROMPT = (
    "Question: {question}\nCould you answer the question based on the available visual information? "
    "Answer Yes or No."
)
"""ZoomEye's answering-confidence question (its source doubles "the the")."""


@dataclass
class GateDecision:
    signal: str
    confidence: float
    threshold: float
    plain_answer: str
    prefill: Any = field(default=None, repr=False)
    """The answer prompt's prefill the decision was made on: the search reads
    the maps of the question's targets from it (``map_prompt="question"``)."""

    @property
    def answered(self) -> bool:
        """The plain answer stands (no search)."""
        return self.confidence >= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "signal": self.signal, "confidence": round(self.confidence, 6), "threshold": self.threshold,
            "decision": "answered" if self.answered else "searched", "plain_answer": self.plain_answer,
        }


def answer_confidence(token_probabilities: Sequence[float]) -> float:
    """The lowest probability the model gave a token of its greedy answer
    (0 for an empty answer)."""
    return float(min(token_probabilities)) if token_probabilities else 0.0


def open_gate(
    mllm: Any,
    image: Image.Image,
    question: str,
    options: Sequence[str] | None,
    config: FocusConfig,
    *,
    capture_keys: Any = None,
    should_stop: Callable[[], bool] | None = None,
    stage: Callable[[str], ContextManager[Any]] = lambda name: nullcontext(),
) -> GateDecision:
    """The gate's decision on ``image``: the answer prompt's prefill (timed as
    ``stage("prefill")``: it becomes the answer's or the maps', as decided),
    the plain answer decoded from it and its confidence by
    ``config.gate_signal`` (timed as ``stage("gate")``)."""
    with stage("prefill"):
        prefill = mllm.prefill_answer(image, format_question(question, options), capture_keys=capture_keys)
    with stage("gate"):
        decoded = mllm.continue_answer(prefill, config.answer_max_new_tokens, should_stop)
        if config.gate_signal == "answer":
            confidence = answer_confidence(decoded.token_probabilities)
        else:
            prompt = ([image], ANSWERABLE_PROMPT.format(question=question))
            confidence = float(mllm.yes_probability([prompt], should_stop=should_stop, keep_prefixes=False)[0])
        check_finite([confidence], "gate's confidence")
    return GateDecision(config.gate_signal, confidence, float(config.gate_threshold), decoded.text, prefill)


def answer_with_gate(
    mllm: Any,
    image: Image.Image,
    question: str,
    options: Sequence[str] | None,
    selected: Sequence[Any],
    config: FocusConfig,
    should_stop: Callable[[], bool] | None = None,
    question_type: int = 1,
) -> tuple[Answer, GateDecision | None]:
    """Stage 4 behind the gate, for a chain whose ROIs are already found (the
    Answer node): the plain answer when it is confident enough, else the
    answer on the ``selected`` ROIs (always the latter when the gate is off).
    The search was paid for before this: here the gate only chooses which
    answer stands."""
    def on_regions() -> Answer:
        return answer_question(mllm, image, question, options, selected, config, should_stop=should_stop,
                               question_type=question_type)

    if config.gate_threshold is None:
        return on_regions(), None
    gate = open_gate(mllm, image, question, options, config, should_stop=should_stop)
    gate.prefill = None  # nothing reads maps from it here
    if gate.answered:
        plain = Answer(gate.plain_answer, parse_option(gate.plain_answer, options), AnswerView("full", [], [image]))
        return plain, gate
    return on_regions(), gate
