"""The texts FOCUS sends with an image, and where the targets sit in them.

A relevance map needs a prompt whose text names the target: the paper's
existence question ("Is there a {target} in the image?"), or the answer
prompt itself when the question already names the target ("What colour is
the woman's bag?"), so that one prefill serves the map and the answer.
``MapPrompt`` is such a text with the character span of each target in it.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Sequence

EXISTENCE_PROMPT = "Is there a {target} in the image? Answer Yes or No."
"""The question of the relevance prefill and of ROI verification (FOCUS.md)."""
ANSWER_HINT = " Answer Yes or No."
"""The existence prompt's last sentence; the paper's verification asks
without it (``FocusConfig.verify_answer_hint``)."""


def verification_prompt(target: str, answer_hint: bool = True) -> str:
    """The yes/no question asked of a crop: the existence prompt, with or
    without its ``Answer Yes or No.``."""
    text = EXISTENCE_PROMPT.format(target=target)
    return text if answer_hint else text.removesuffix(ANSWER_HINT)
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def format_question(question: str, options: Sequence[str] | None) -> str:
    """The question as the model gets it; options lettered A, B, C, ..."""
    if not options:
        return question
    lines = [question] + [f"{letter}. {text}" for letter, text in zip(string.ascii_uppercase, options)]
    return "\n".join(lines + [MC_INSTRUCTION])


@dataclass
class MapPrompt:
    """A user text for one prefill, with the span ``(start, end)`` of each
    target's words in it (character offsets into ``text``)."""

    text: str
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)


def existence_prompt(target: str) -> MapPrompt:
    text = EXISTENCE_PROMPT.format(target=target)
    start = EXISTENCE_PROMPT.index("{target}")
    return MapPrompt(text, {target: (start, start + len(target))})


def question_prompt(question: str, options: Sequence[str] | None, targets: Sequence[str]) -> MapPrompt:
    """The answer prompt (``format_question``) with the span of every target
    that the question names as whole words, case folded (its last mention in
    the question, not in the options); targets it does not name get no span."""
    spans = {}
    for target in targets:
        words = r"\s+".join(re.escape(word) for word in target.split())
        found = list(re.finditer(rf"(?<!\w){words}(?!\w)", question, flags=re.IGNORECASE))
        if found:
            spans[target] = (found[-1].start(), found[-1].end())
    return MapPrompt(format_question(question, options), spans)
