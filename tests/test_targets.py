"""Stage 1: the few-shot prompt, the answer parser, the heuristic fallback."""

from __future__ import annotations

import pytest
import torch

from focus_engine import FocusConfig, FocusInputError
from focus_engine.mllm.runtime import Decoded
from focus_engine.targets import (
    ICL_EXAMPLES, LEAD_IN, LIST_ENDS, QUESTION_SUFFIX, build_icl_prompt, extract_targets, find_targets, given_targets,
    heuristic_targets,
    parse_targets, singularize,
)


@pytest.mark.parametrize(
    ("answer", "targets", "qtype"),
    [
        (f"I need to find the bag. {LEAD_IN} woman's bag.", ["woman's bag"], 1),
        (f"{LEAD_IN} cup and laptop.", ["cup", "laptop"], 1),
        (f"{LEAD_IN} lamp, plant and bookshelf.", ["lamp", "plant", "bookshelf"], 1),
        (f"{LEAD_IN} lamp, plant, and bookshelf", ["lamp", "plant", "bookshelf"], 1),
        (f"{LEAD_IN} all cars.", ["car"], 2),
        (f"{LEAD_IN} all boxes and the red buses.", ["box", "red buses"], 2),
        (f"{LEAD_IN} all berries", ["berry"], 2),
        (f"{LEAD_IN} all people.", ["person"], 2),
        (f"{LEAD_IN} the red car.\nQuestion: What is the colour of ...", ["red car"], 1),
        (f"{LEAD_IN} dog. Question: next one", ["dog"], 1),
        (f"{LEAD_IN.lower()} \"umbrella\".", ["umbrella"], 1),
        (f"{LEAD_IN} cat and cat.", ["cat"], 1),
        # the model repeats the lead-in of an example first: the last one counts
        (f"{LEAD_IN} cup and laptop. Now: {LEAD_IN} green bottle.", ["green bottle"], 1),
        # a word-level tokenizer decodes with spaces around punctuation
        (f"{LEAD_IN[:-1]} : purple sign .", ["purple sign"], 1),
        (f"{LEAD_IN[:-1]} : woman ' s bag , red car .", ["woman's bag", "red car"], 1),
    ],
)
def test_parse_targets(answer, targets, qtype):
    assert parse_targets(answer) == (targets, qtype)


@pytest.mark.parametrize("answer", ["", "I don't know.", "objects: car", f"{LEAD_IN} .", f"{LEAD_IN}   "])
def test_unparsable_answers(answer):
    assert parse_targets(answer) is None


@pytest.mark.parametrize(
    ("word", "single"),
    [("cars", "car"), ("boxes", "box"), ("buses", "bus"), ("berries", "berry"), ("glass", "glass"),
     ("people", "person"), ("children", "child"), ("bus", "bus"), ("benches", "bench")],
)
def test_singularize(word, single):
    assert singularize(word) == single


@pytest.mark.parametrize(
    ("question", "targets", "qtype"),
    [
        ("What is the color of the star?", ["star"], 1),
        ("What is the colour of the woman's shirt?", ["woman's shirt"], 1),
        ("Which letter is on the blue sign?", ["blue sign"], 1),
        ("Is the red circle to the left or right of the green square?", ["red circle", "green square"], 1),
        ("How many cars are there in the image?", ["car"], 2),
        ("What is the material of the glove? (A) rubber (B) cotton", ["glove"], 1),
        ("What is the material of the glove?\nA. rubber\nB. cotton", ["glove"], 1),
        ("What shape is the red object?", ["red object"], 1),
        ("Umbrella colour?", ["Umbrella"], 1),
    ],
)
def test_heuristic_targets(question, targets, qtype):
    assert heuristic_targets(question) == (targets, qtype)


def test_prompt_holds_every_example_and_ends_with_the_question():
    prompt = build_icl_prompt("Where is the cat?")
    for question, answer in ICL_EXAMPLES:
        assert f"Question: {question}\n{QUESTION_SUFFIX}\nAnswer: {answer}" in prompt
        assert parse_targets(answer) is not None  # the examples model the format the parser reads
    assert prompt.endswith(f"Question: Where is the cat?\n{QUESTION_SUFFIX}\nAnswer:")


def test_given_targets():
    assert given_targets(["red car", " the dog "]).names == ["red car", "dog"]
    assert given_targets("red car, blue sign; tree").names == ["red car", "blue sign", "tree"]
    counted = given_targets(["all cars"])
    assert counted.names == ["car"] and counted.question_type == 2 and counted.source == "given"
    with pytest.raises(FocusInputError, match="empty"):
        given_targets(["car", "  "])
    with pytest.raises(FocusInputError):
        given_targets(["the"])
    with pytest.raises(FocusInputError, match="no targets"):
        given_targets([])


class FakeMLLM:
    def __init__(self, text, cut_off=False):
        self.text, self.cut_off = text, cut_off
        self.prompts = []

    def reply(self, text, images=(), max_new_tokens=64, should_stop=None, reply_prefix="", stop_strings=(),
              lookup_tokens=0, stop_after="", fixed_text=""):
        self.prompts.append((text, tuple(images), max_new_tokens))
        self.reply_prefix, self.stop_strings, self.lookup_tokens = reply_prefix, stop_strings, lookup_tokens
        self.stop_after, self.fixed_text = stop_after, fixed_text
        return Decoded(self.text, [0.5] * len(self.text.split()), cut_off=self.cut_off)


def test_extract_targets_from_the_model():
    fake = FakeMLLM(f" To answer, find them. {LEAD_IN} red umbrella and bench.")
    found = extract_targets(fake, "Is the red umbrella left of the bench?", FocusConfig(target_max_new_tokens=20))
    assert found.names == ["red umbrella", "bench"] and found.question_type == 1 and found.source == "model"
    text, images, budget = fake.prompts[0]
    assert images == () and budget == 20 and text == build_icl_prompt("Is the red umbrella left of the bench?")
    assert found.note is None
    # decoding ends with the list, and the worked examples are the prompt's fixed start
    assert fake.stop_strings == LIST_ENDS and LEAD_IN.startswith(fake.stop_after) and fake.stop_after
    assert fake.fixed_text and text.startswith(fake.fixed_text) and "Is the red umbrella" not in fake.fixed_text


class CharacterTokenizer:
    """One token per character (its code point)."""

    @staticmethod
    def decode(ids, skip_special_tokens=True):
        return "".join(chr(int(i)) for i in ids)


def test_decoding_stops_at_the_end_of_the_list_not_before():
    """The stop strings count only after the lead-in: the reasoning's "."
    and a newline before the list do not end the reply, the newline after it does."""
    from focus_engine.mllm.runtime import _stopping_criteria

    stop = _stopping_criteria(None, LIST_ENDS, CharacterTokenizer(), 0, LEAD_IN.rstrip(":"))

    def stops(text):
        return bool(stop(torch.tensor([[ord(c) for c in text]]), None)[0])

    assert not stops("To answer the question, I need to find the red car.\nSo")
    assert not stops(f"To answer, I need to find it. {LEAD_IN} red car.")
    assert stops(f"To answer, I need to find it. {LEAD_IN} red car.\nQuestion")


def test_a_direct_reply_starts_at_the_lead_in_and_stops_at_the_list(planted):
    fake = FakeMLLM(" red umbrella and bench.")
    found = extract_targets(fake, "Is the red umbrella left of the bench?", FocusConfig(target_reply="direct"))
    assert found.names == ["red umbrella", "bench"] and found.source == "model"
    assert fake.reply_prefix.strip() == LEAD_IN and "." in fake.stop_strings
    # on a real model (greedy): decoding ends at the first stop string it writes
    whole = planted.generate("Name one colour.", max_new_tokens=6, reply_prefix=" " + LEAD_IN)
    first = whole.split()[0]
    stopped = planted.generate("Name one colour.", max_new_tokens=6, reply_prefix=" " + LEAD_IN, stop_strings=(first,))
    assert len(whole.split()) > 1 and stopped.split() == [first]


@pytest.mark.parametrize(("answer", "cut_off", "targets"), [
    (f"{LEAD_IN} red car and blu", True, ["red car"]),  # cut off in the middle of a word
    (f"{LEAD_IN} red car, blue bus and", True, ["red car", "blue bus"]),
    (f"{LEAD_IN} red car and blue bus.", True, ["red car", "blue bus"]),  # the list ended before the cut
    (f"{LEAD_IN} red car and blue bus\nQuestion: How", True, ["red car", "blue bus"]),
    (f"{LEAD_IN} red car and blue bus", False, ["red car", "blue bus"]),  # ended by the model, not the budget
])
def test_a_list_cut_off_by_the_token_budget_loses_its_unfinished_item(answer, cut_off, targets):
    assert parse_targets(answer, cut_off=cut_off) == (targets, 1)


def test_extract_targets_says_when_the_reply_ran_out_of_tokens():
    cut = extract_targets(FakeMLLM(f"{LEAD_IN} red umbrella and ben", cut_off=True), "Is the red umbrella left of the "
                          "bench?", FocusConfig(target_max_new_tokens=20))
    assert cut.names == ["red umbrella"] and cut.source == "model"
    assert "target_max_new_tokens=20" in cut.note and "unfinished last item was left out" in cut.note
    alone = extract_targets(FakeMLLM(f"{LEAD_IN} red umbr", cut_off=True), "What colour is the kite?", FocusConfig())
    assert alone.names == ["kite"] and alone.source == "heuristic" and "ran out of tokens" in alone.note
    whole = extract_targets(FakeMLLM(f"{LEAD_IN} red umbrella and bench. Question: Wh", cut_off=True), "q?", FocusConfig())
    assert whole.names == ["red umbrella", "bench"] and whole.note is None


def test_a_reply_says_whether_the_token_budget_cut_it_off(planted):
    """``MLLM.reply`` is cut off when it used every token it was given without
    ending, not when a stop string ended it."""
    whole = planted.reply("Name one colour.", max_new_tokens=6, reply_prefix=" " + LEAD_IN)
    assert whole.cut_off and len(whole.token_probabilities) == 6
    stopped = planted.reply("Name one colour.", max_new_tokens=6, reply_prefix=" " + LEAD_IN,
                            stop_strings=(whole.text.split()[0],))
    assert not stopped.cut_off and stopped.text == whole.text.split()[0]


def test_extract_targets_falls_back_and_says_so():
    fake = FakeMLLM("banana banana banana " * 10)
    found = extract_targets(fake, "What is the colour of the kite?", FocusConfig())
    assert found.names == ["kite"] and found.source == "heuristic"
    assert "could not be parsed" in found.note and "banana" in found.note and len(found.note) < 200


def test_given_targets_skip_the_model():
    fake = FakeMLLM(f"{LEAD_IN} kite.")
    found = find_targets(fake, "What is the colour of the kite?", "red car, all dogs", FocusConfig())
    assert found.names == ["red car", "dog"] and found.question_type == 2 and fake.prompts == []
    found = find_targets(fake, "What is the colour of the kite?", None, FocusConfig())
    assert found.names == ["kite"] and found.source == "model" and len(fake.prompts) == 1
