"""Stage 1: which objects does the question need? (in-context learning)

The model gets a few worked examples in ZoomEye's format and continues the
last one; the objects are parsed after the fixed lead-in. A target starting
with "all " ("all cars") marks a type-2 (counting / all instances) question.
When the answer cannot be parsed, a noun-phrase heuristic on the question
takes over [ours], and the result says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import FocusInputError
from .inputs import MAX_TARGET_CHARS, MAX_TARGETS, check_target, check_target_count, check_text_fits

LEAD_IN = "So I need the information about the following objects:"
LIST_ENDS = ("\n", "Question:")
"""Where the target list ends in a reasoned reply (``parse_targets`` reads
the list up to the first of them)."""
QUESTION_SUFFIX = "Which objects do you need to look at to answer the question?"
ICL_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "What is the color of the woman's bag?",
        "To answer the question, I need to find the woman's bag. " + LEAD_IN + " woman's bag.",
    ),
    (
        "Is the cup on the left or right side of the laptop?",
        "To answer the question, I need to find the cup and the laptop and compare their positions. "
        + LEAD_IN + " cup and laptop.",
    ),
    (
        "Which is taller, the lamp, the plant or the bookshelf?",
        "To answer the question, I need to compare three objects. " + LEAD_IN + " lamp, plant and bookshelf.",
    ),
    (
        "How many cars are parked on the street?",
        "To answer the question, I need to find every car on the street. " + LEAD_IN + " all cars.",
    ),
    (
        "What is written on the sign above the door?",
        "To answer the question, I need to read the sign above the door. " + LEAD_IN + " sign above the door.",
    ),
)

_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "feet": "foot",
    "teeth": "tooth", "mice": "mouse", "geese": "goose",
}
_ARTICLES = {"a", "an", "the"}
_ATTRIBUTE_WORDS = {
    "color", "colour", "material", "shape", "size", "number", "letter", "text", "side", "left", "right",
    "top", "bottom", "image", "picture", "photo", "type", "kind", "brand", "name", "word", "position",
}
_FUNCTION_WORDS = {
    "of", "to", "in", "on", "at", "is", "are", "was", "were", "or", "and", "with", "from", "by", "for",
    "near", "next", "behind", "above", "below", "under", "over", "between", "than", "that", "which", "who",
    "what", "where", "does", "do", "has", "have", "can", "there", "it", "its", "side", "located",
}
_DETERMINERS = {"the", "a", "an", "this", "that"}


@dataclass
class Targets:
    """The objects a question needs, and how they were found."""

    names: list[str]
    question_type: int
    source: str  # "model" | "heuristic" | "given"
    raw: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "targets": list(self.names),
            "question_type": self.question_type,
            "source": self.source,
            "raw": self.raw,
            "note": self.note,
        }


def icl_examples_text() -> str:
    """The few-shot prompt's worked examples: the same for every question
    (prefilled once per loaded model, ``MLLM.reply(fixed_text=...)``)."""
    return "".join(f"Question: {q}\n{QUESTION_SUFFIX}\nAnswer: {a}\n\n" for q, a in ICL_EXAMPLES)


def build_icl_prompt(question: str) -> str:
    """The few-shot prompt; the model continues after the final "Answer:"."""
    return icl_examples_text() + f"Question: {question}\n{QUESTION_SUFFIX}\nAnswer:"


def check_extraction_fits(mllm: Any, question: str, config: Any) -> None:
    """Refuse a question whose extraction prompt (text only) cannot fit the
    model's context with the reply's tokens, before the model is called."""
    check_text_fits(mllm, build_icl_prompt(question), None, reserve=config.target_max_new_tokens,
                    what="the question (in the target-extraction prompt)")


def singularize(word: str) -> str:
    lower = word.lower()
    if lower in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[lower]
    if lower.endswith("ies") and len(lower) > 4:
        return word[:-3] + "y"
    if lower.endswith(("ses", "xes", "zes", "ches", "shes")) and len(lower) > 4:
        return word[:-2]
    if lower.endswith("s") and not lower.endswith(("ss", "us", "is")) and len(lower) > 2:
        return word[:-1]
    return word


def _clean_target(text: str) -> tuple[str, bool]:
    """Strip quotes, brackets, articles; return (target, is_all)."""
    target = text.strip().strip("\"'`()[]{}*").strip()
    target = re.sub(r"\s+", " ", target).rstrip(".;:!?").strip()
    lowered = target.lower()
    is_all = lowered.startswith("all ") or lowered.startswith("all of the ")
    if is_all:
        target = re.sub(r"^all (of the |the )?", "", target, flags=re.IGNORECASE)
        words = target.split(" ")
        words[-1] = singularize(words[-1])
        target = " ".join(words)
    words = target.split()
    while words and words[0].lower() in _ARTICLES:
        words = words[1:]
    return " ".join(words), is_all


def _split_list(text: str) -> list[str]:
    return [p for p in re.split(r",\s*and\s+|,\s*|\s+and\s+|;\s*", text) if p.strip()]


def _dedupe(items: Sequence[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if item and item.lower() not in seen:
            seen.add(item.lower())
            out.append(item)
    return out


def parse_targets(text: str, cut_off: bool = False) -> tuple[list[str], int] | None:
    """Targets and question type from a model answer, or None if unparsable.
    ``cut_off``: the reply ran out of tokens; a list it left unfinished (no
    ".", newline or next question after it) loses its last item, which may
    be a word cut in two (not where it was cut after a separator)."""
    if not text:
        return None
    # word-level tokenizers decode with spaces around punctuation ("objects : a .")
    text = re.sub(r"\s*'\s*s\b", "'s", re.sub(r"\s+([:.,;!?])", r"\1", text))
    at = text.lower().rfind(LEAD_IN.lower())
    if at < 0:
        return None
    after = text[at + len(LEAD_IN) :]
    rest = re.split(r"\n|Question:", after, maxsplit=1)[0]
    parts = _split_list(rest.strip().rstrip(".").strip())
    if cut_off and not re.search(r"[.\n]|Question:", after):
        dangling = re.search(r"(,|;|\band)\s*$", rest)  # "red car and": cut between items, none unfinished
        parts = _split_list(rest[: dangling.start()]) if dangling else parts[:-1]
    targets, any_all = [], False
    for part in parts:
        target, is_all = _clean_target(part)
        if target:
            targets.append(target)
            any_all |= is_all
    targets = _dedupe(targets)
    if not targets:
        return None
    return targets, 2 if any_all else 1


def heuristic_targets(question: str) -> tuple[list[str], int]:
    """[ours] Noun phrases of the question, when the model's answer fails."""
    text = re.split(r"\n|\(A\)|\bA\.\s", question, maxsplit=1)[0]
    text = re.sub(r"\([^)]*\)", " ", text)
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9'\-]*", text)
    lowered = [w.lower() for w in words]

    how_many = re.search(r"\bhow many ([a-z][a-z'\-]*(?: [a-z][a-z'\-]*)?)", text.lower())
    if how_many:
        phrase = [w for w in how_many.group(1).split() if w not in _FUNCTION_WORDS and w not in {"are", "is"}]
        if phrase:
            phrase[-1] = singularize(phrase[-1])
            return [" ".join(phrase)], 2

    phrases: list[str] = []
    index = 0
    while index < len(words):
        if lowered[index] in _DETERMINERS:
            start = index + 1
            end = start
            while end < len(words) and lowered[end] not in _FUNCTION_WORDS and lowered[end] not in _DETERMINERS:
                end += 1
            phrase = words[start:end]
            # "the colour of the X" names an attribute, not an object
            if phrase and not (len(phrase) == 1 and phrase[0].lower() in _ATTRIBUTE_WORDS):
                phrases.append(" ".join(phrase))
            index = max(end, index + 1)
        else:
            index += 1
    phrases = _dedupe([p for p in phrases if p.lower() not in _ATTRIBUTE_WORDS])
    if phrases:
        return phrases, 1
    content = [w for w in words if w.lower() not in _FUNCTION_WORDS and w.lower() not in _ATTRIBUTE_WORDS]
    return [content[-1] if content else words[-1] if words else question.strip()], 1


def given_targets(targets: Sequence[str] | str) -> Targets:
    """User-supplied targets (a list, or one string split on , ; newlines)."""
    items = re.split(r"[,;\n]", targets) if isinstance(targets, str) else list(targets)
    check_target_count(len(items))  # before any work: a stranger's workflow may list hundreds
    cleaned, any_all = [], False
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise FocusInputError(f"target {item!r} is empty; give object phrases such as 'red car'")
        target, is_all = _clean_target(check_target(item))
        if not target:
            raise FocusInputError(f"target {item!r} has no object left after cleaning; give e.g. 'red car'")
        cleaned.append(target)
        any_all |= is_all
    cleaned = _dedupe(cleaned)
    if not cleaned:
        raise FocusInputError("no targets given; pass at least one object phrase such as 'red car'")
    return Targets(names=cleaned, question_type=2 if any_all else 1, source="given")


def find_targets(
    mllm: Any, question: str, given: Sequence[str] | str | None, config: Any, should_stop: Any = None
) -> Targets:
    """Stage 1: the ``given`` targets when there are any (no model call),
    else the model's (``extract_targets``)."""
    if given:
        return given_targets(given)
    return extract_targets(mllm, question, config, should_stop)


def extract_targets(mllm: Any, question: str, config: Any, should_stop: Any = None) -> Targets:
    """Ask the model (text only, greedy) which objects ``question`` (checked,
    see ``inputs``) needs; ``should_stop`` is polled during generation."""
    ask = {"images": (), "max_new_tokens": config.target_max_new_tokens, "should_stop": should_stop,
           "lookup_tokens": config.target_lookup_tokens, "fixed_text": icl_examples_text()}
    if config.target_reply == "direct":  # the reply starts at the lead-in and ends with the list
        reply = mllm.reply(build_icl_prompt(question), reply_prefix=" " + LEAD_IN, stop_strings=(".", "\n"), **ask)
        raw = LEAD_IN + " " + reply.text
    else:
        # decoding ends with the list: parse_targets reads no further than its line
        reply = mllm.reply(build_icl_prompt(question), stop_strings=LIST_ENDS, stop_after=LEAD_IN.rstrip(":"), **ask)
        raw = reply.text
    parsed = parse_targets(raw, cut_off=reply.cut_off)
    if parsed is not None:
        names, notes = parsed[0], []
        if reply.cut_off and parse_targets(raw) != parsed:
            notes.append(f"the target reply ran out of tokens (target_max_new_tokens={config.target_max_new_tokens}) "
                         "in the middle of its list; its unfinished last item was left out")
        if len(names) > MAX_TARGETS:
            names = names[:MAX_TARGETS]
            notes.append(f"the model named {len(parsed[0])} objects; searched for the first {MAX_TARGETS}")
        return Targets(names=names, question_type=parsed[1], source="model", raw=raw, note="; ".join(notes) or None)
    targets, question_type = heuristic_targets(question)
    targets = [t[:MAX_TARGET_CHARS] for t in targets[:MAX_TARGETS]]
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    cut = " (it ran out of tokens)" if reply.cut_off else ""
    return Targets(
        names=targets,
        question_type=question_type,
        source="heuristic",
        raw=raw,
        note=f"the model's target answer could not be parsed{cut} ({shown!r}); used the question's noun phrases",
    )
