"""Checks of the text a user gives: the question, the options, a target
phrase. Each returns the cleaned value or raises FocusInputError saying what
to do. Images are checked by ``images.to_pil_rgb``. The edges (pipeline,
nodes, CLI, the adapter's public ``relevance_map``) call these once; the
stages trust what they are given."""

from __future__ import annotations

import string
from typing import Any, Sequence

from .errors import FocusInputError


def check_question(question: Any) -> str:
    if not isinstance(question, str) or not question.strip():
        raise FocusInputError("the question is empty; ask something about the image, e.g. 'What colour is the car?'")
    return question.strip()


def check_options(options: Sequence[str] | None) -> list[str] | None:
    """Multiple-choice options, stripped; None for an open question."""
    if options is None:
        return None
    if isinstance(options, str):
        raise FocusInputError("options must be a list of strings, one per choice, not one string")
    cleaned = [str(o).strip() for o in options]
    if len(cleaned) < 2 or len(cleaned) > len(string.ascii_uppercase):
        raise FocusInputError(f"give between 2 and 26 options for a multiple-choice question, not {len(cleaned)}")
    if not all(cleaned):
        raise FocusInputError("an option is empty; every choice needs text")
    return cleaned


def check_target(target: Any) -> str:
    """The target with whitespace folded; FocusInputError if empty."""
    if not isinstance(target, str) or not target.strip():
        raise FocusInputError(f"target {target!r} is empty; give an object phrase such as 'red car'")
    return " ".join(target.split())
