"""Answer reading (focus_engine.reading): stage 4's option parser, the
benchmark's default reading and MME-RealWorld's own."""

from __future__ import annotations

from focus_engine.reading import choose_option, mme_choice, parse_option, read_choice


def test_parse_option_reads_a_leading_letter_or_option_text():
    assert parse_option("B", ["red", "blue"]) == "B"
    assert parse_option("(A) red", ["red", "blue"]) == "A"
    assert parse_option("blue, clearly", ["red", "blue"]) == "B"
    assert parse_option("no idea", ["red", "blue"]) is None
    # an option's text counts only as whole words at the start of the answer
    assert parse_option("the letter A", ["T", "A", "M", "X"]) is None
    assert parse_option("reddish", ["red", "blue"]) is None
    assert parse_option("red.", ["red", "blue"]) == "A"
    assert parse_option("A", None) is None


def test_choose_option_reads_letters_and_option_text():
    options = ["circle", "square", "star", "cross"]
    assert choose_option("B", options) == 1
    assert choose_option("(C) star", options) == 2
    assert choose_option("The answer is D.", options) == 3
    assert choose_option("square", options) == 1
    assert choose_option("It looks like a star to me", options) == 2
    assert choose_option("a circle or a square", options) is None  # ambiguous
    assert choose_option("a hexagon", options) is None
    assert choose_option("", options) is None
    assert choose_option("dark red", ["red", "dark red"]) == 1  # the longer option wins
    assert choose_option("left left left", ["right", "left"]) == 1
    assert choose_option("E", options) is None  # no option E


def test_mme_realworlds_own_answer_phrase_is_read():
    """MME-RealWorld's prompt ends with "The best answer is:", so models answer that way."""
    options = ["a bus", "two cars", "a truck", "nothing", "The image does not feature it."]
    assert choose_option("The best answer is: E", options) == 4
    assert choose_option("The best answer is (B).", options) == 1
    assert choose_option("Answer: C", options) == 2


def test_mme_answers_are_read_as_its_evaluation_reads_them():
    """MME-RealWorld's eval_your_results.py: prefixes removed, the first
    capital A-E anywhere, a long answer without one is nothing, else the
    option containing the answer."""
    options = ["a bus", "two cars", "a truck", "nothing", "The image does not feature it."]
    assert mme_choice("The best answer is: E", options) == 4
    assert mme_choice("(C) a truck", options) == 2
    assert mme_choice("I think it shows A car", options) == 0  # its rule: the first capital A-E
    assert mme_choice("there is no way to tell what is in front of the ego vehicle here at all", options) is None
    assert mme_choice("two cars", options) == 1
    assert choose_option("I think it shows A car", options) is None  # the default reading is stricter


def test_read_choice_follows_the_benchmarks_reading():
    options = ["a bus", "two cars", "a truck", "nothing", "The image does not feature it."]
    assert read_choice("I think it shows A car", options, "mme") == 0
    assert read_choice("I think it shows A car", options) is None
    assert read_choice("", options, "mme") is None and read_choice("", options) is None
