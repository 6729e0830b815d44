"""Answer reading: which option a free-text answer names. Every reader of
answers takes it from here: stage 4 (``parse_option``), the benchmark
(``read_choice``: ``choose_option``, MME-RealWorld's own ``mme_choice`` or
TreeBench's ``treebench_choice``)
and the demo's verdict."""

from __future__ import annotations

import re
import string
from typing import Sequence

MME_ANSWER_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                       "The best option isThe correct option is", "Best answer:Best option:")
"""As its evaluation has them: two pairs run together there (missing commas),
kept so that answers are read exactly as its published scores read them."""
READINGS = ("default", "mme", "treebench")
PARSES = ("lenient", "strict")
"""``strict``: only an answer that is exactly an option letter counts (the
FOCUS paper's "no post-processing"); ``lenient``: the reading's rules."""


def parse_option(answer: str, options: Sequence[str] | None) -> str | None:
    """The option letter an answer starts with, by letter or by the option's
    text (whole words), or None."""
    if not options:
        return None
    letters = string.ascii_uppercase[: len(options)]
    match = re.match(rf"^\W*\(?([{letters}])\b", answer.strip())
    if match:
        return match.group(1)
    lowered = answer.strip().lower()
    for letter, text in zip(letters, options):
        # whole words only: option "T" must not match "the letter A", nor "red" match "reddish"
        if re.match(rf"{re.escape(text.strip().lower())}(?!\w)", lowered):
            return letter
    return None


def choose_option(answer: str, options: Sequence[str]) -> int | None:
    """Index of the option a free-text answer picks, or None.

    In order: a leading letter or option text (``parse_option``); "answer is
    B" / "option (B)" / "(B)"; else the one option whose text appears as
    whole words (an option inside a longer one that also appears, e.g. "red"
    in "dark red", does not count). Ambiguous answers give None."""
    if not options:
        return None
    letter = parse_option(answer, options)
    letters = string.ascii_uppercase[: len(options)]
    if letter is None:
        # "answer is B", "Answer: (B)", MME-RealWorld's own "The best answer is: E"
        match = re.search(rf"(?i:answer|option|choice)\s*(?:is)?\s*:?\s*\(?([{letters}])\b", answer) or re.search(
            rf"\(([{letters}])\)", answer
        )
        letter = match.group(1) if match else None
    if letter is not None:
        return letters.index(letter)
    text = answer.lower()
    found = [
        i for i, option in enumerate(options)
        if re.search(rf"(?<!\w){re.escape(option.lower().strip())}(?!\w)", text)
    ]
    found = [i for i in found if not any(j != i and options[i].lower() in options[j].lower() for j in found)]
    return found[0] if len(found) == 1 else None


def _without_answer_prefixes(answer: str) -> str:
    """The answer stripped, its ``MME_ANSWER_PREFIXES`` removed (the multiple-choice
    extraction MME-RealWorld and TreeBench share)."""
    text = answer.strip()
    for prefix in MME_ANSWER_PREFIXES:
        text = text.replace(prefix, "")
    return text


def mme_choice(answer: str, options: Sequence[str]) -> int | None:
    """MME-RealWorld's own reading of an answer (its evaluation/
    eval_your_results.py, restated): its answer prefixes removed, a long
    answer without a capital A-E is nothing, else the first capital A-E
    anywhere, else the option whose text contains the answer."""
    letters = string.ascii_uppercase[: len(options)]
    text = _without_answer_prefixes(answer)
    match = re.search(f"[{letters}]", text)
    if match is not None:
        return letters.index(match.group(0))
    if len(text.split()) > 10:
        return None
    lowered = text.strip().lower()
    for index, option in enumerate(options):
        if lowered and lowered in option.lower():
            return index
    return None


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def treebench_choice(answer: str, options: Sequence[str]) -> int | None:
    """TreeBench's reading of an answer (VLMEvalKit's ``TreeBench.evaluate``,
    restated): the text inside ``<answer>...</answer>`` if there is one, then
    its multiple-choice extraction: the answer prefixes removed, a long answer
    without a capital A-E is nothing, else the first capital A-E anywhere
    (only A-E: its pattern is fixed), else a bare letter such as "(b)"."""
    tagged = _ANSWER_TAG.search(answer)
    text = _without_answer_prefixes(tagged.group(1) if tagged else answer)
    if len(text.split()) > 10 and not re.search("[ABCDE]", text):
        return None
    match = re.search("[ABCDE]", text)
    if match is None:  # its fallback: the answer inside "(A)" .. "(E)", e.g. "(b" or "a"
        lowered = text.lower()
        letter = next((c for c in "ABCDE" if lowered in f"({c.lower()})"), None) if lowered else None
    else:
        letter = match.group(0)
    index = "ABCDE".index(letter) if letter else None
    return index if index is not None and index < len(options) else None


def read_choice(answer: str, options: Sequence[str], reading: str = "default", parse: str = "lenient") -> int | None:
    """The option index ``answer`` picks, read as ``reading`` says (``default``:
    ``choose_option``; ``mme``: MME-RealWorld's ``mme_choice``; ``treebench``:
    TreeBench's ``treebench_choice``), or with
    ``parse="strict"`` only when the answer, stripped of white space, is
    exactly one of the option letters ("B", not "B." nor "(B)"); None for an
    empty answer."""
    if not answer:
        return None
    if parse == "strict":
        letters = string.ascii_uppercase[: len(options)]
        text = answer.strip()
        return letters.index(text) if len(text) == 1 and text in letters else None
    if reading == "mme":
        return mme_choice(answer, options)
    if reading == "treebench":
        return treebench_choice(answer, options)
    return choose_option(answer, options)


__all__ = ["MME_ANSWER_PREFIXES", "PARSES", "READINGS", "choose_option", "mme_choice", "parse_option", "read_choice",
           "treebench_choice"]
