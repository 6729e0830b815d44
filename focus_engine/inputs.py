"""Checks of the text a user gives: the question, the options, a target
phrase. Each returns the cleaned value or raises FocusInputError saying what
to do. Images are checked by ``images.to_pil_rgb``. The edges (pipeline,
nodes, CLI, the adapter's public ``relevance_map``) call these once; the
stages trust what they are given."""

from __future__ import annotations

import string
from typing import Any, Sequence

from .errors import FocusInputError

MAX_TARGETS = 8
"""The most targets one question may name. Each target costs its own maps
and verification passes; the benchmarks' questions name 1-3 (a counting
question one, "all cars"), so a real question never comes near this."""
MAX_TARGET_CHARS = 200
"""The longest target phrase, in characters ("the red car behind the bus" is 26)."""


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
    folded = " ".join(target.split())
    if len(folded) > MAX_TARGET_CHARS:
        raise FocusInputError(
            f"a target is {len(folded)} characters long, more than {MAX_TARGET_CHARS}; name an object in a few "
            "words, e.g. 'red car'"
        )
    return folded


def check_target_count(count: int) -> None:
    """At most ``MAX_TARGETS`` targets per question."""
    if count > MAX_TARGETS:
        raise FocusInputError(
            f"{count} targets given; FOCUS searches for at most {MAX_TARGETS} objects per question (each costs its "
            "own model passes; questions name 1-3). Name the few objects the question is about"
        )


def check_fits_context(mllm: Any, text: str, image: Any = None, *, reserve: int = 0, what: str = "the question") -> None:
    """Refuse a prompt the model cannot read: ``text`` in the model's chat
    template, after the image's tokens (``image`` None: a text-only prompt),
    plus ``reserve`` tokens to generate, must fit the model's context
    (``max_position_embeddings``). Beyond it a model reads positions it was
    never trained on, and the work only grows. The adapter counts
    (``prompt_length``, ``text_length``, ``context_length``); an adapter
    that cannot count is not checked."""
    limit = getattr(mllm, "context_length", None)
    if not limit or not hasattr(mllm, "prompt_length"):
        return
    total = int(mllm.prompt_length(text, image)) + int(reserve)
    if total <= limit:
        return
    own = int(mllm.text_length(text))
    shown = "the image and the chat template" if image is not None else "the chat template"
    raise FocusInputError(context_overflow(what, own, int(reserve), limit, total - own - int(reserve), shown))


def check_text_fits(mllm: Any, text: str, image: Any = None, *, reserve: int = 0, what: str = "the question") -> None:
    """``check_fits_context`` for the hot path: ``text``'s own tokens (the
    tokenizer only, no template, no pixels) are a lower bound of the prompt's;
    only when they alone overflow is the whole prompt counted, for the
    message. What fits by this bound but not with the image's tokens is
    refused by the adapter on the real inputs, before that model call
    (``HFRuntime.check_context``)."""
    limit = getattr(mllm, "context_length", None)
    if limit and hasattr(mllm, "text_length") and int(mllm.text_length(text)) + int(reserve) > limit:
        check_fits_context(mllm, text, image, reserve=reserve, what=what)


def context_overflow(what: str, own: int, reserve: int, limit: int, around: int = 0, shown: str = "") -> str:
    """The message for a prompt longer than the model's context, with its
    numbers: ``own`` tokens of ``what``, ``around`` more for ``shown`` (the
    image, the chat template), ``reserve`` to generate."""
    total = own + around + reserve
    parts = f"plus {around} for {shown} and {reserve}" if shown else f"and {reserve}"
    return (
        f"{what} is too long for this model: {own} tokens, {parts} for the answer make {total}, more than the "
        f"model's context of {limit} tokens (max_position_embeddings). Shorten it by at least {total - limit} tokens"
    )
