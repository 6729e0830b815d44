"""Chat templates that think by default (Qwen3.5 4B and larger, Qwen3.6,
Qwen3-VL Thinking) are rendered in their non-thinking form, for every prompt
every method builds; one that cannot stop thinking is refused at load.

Tested on the templates the released checkpoints ship (``shipped_templates``:
trl's and xinference's copies), each written into a copy of the family's
planted model folder and loaded with ``load_mllm``, as a user's folder is."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from families import FAMILY
from helpers import scene
from shipped_templates import (
    FAMILY_TEMPLATES, THINKS_BY_DEFAULT, TRL_TEMPLATES, XINFERENCE_MODELS, shipped_template, trl_template,
    xinference_template,
)
from focus_engine import FocusConfig, load_mllm
from focus_engine.errors import FocusModelError
from focus_engine.methods import make_method
from focus_engine.mllm.thinking import open_block
from focus_engine.prompts import EXISTENCE_PROMPT
from focus_engine.targets import build_icl_prompt

CASES = [(family, name) for family, names in FAMILY_TEMPLATES.items() for name in names]
EMPTY_BLOCK = "<think>\n\n</think>\n\n"
"""The empty reasoning block every Qwen template that thinks writes before an answer."""
ASSISTANT = "<|im_start|>assistant\n"
QUESTION, OPTIONS = "What colour is the square?", ["red", "blue", "green", "white"]
FAST = FocusConfig(answer_max_new_tokens=3, n_steps=2, max_overrun=1, target_max_new_tokens=12)

_folders: dict[tuple[str, str, bool], Path] = {}


def templated(request: pytest.FixtureRequest, family: str, template: str, *, undamped: bool = False) -> Path:
    """A copy of ``family``'s planted folder (``undamped``: the one with every
    layer at full strength, whose last position reads the whole prompt) that
    ships ``template`` as its chat_template.jinja (made once per session)."""
    key = (family, template, undamped)
    if key not in _folders:
        fixture = FAMILY[family].undamped if undamped else f"{FAMILY[family].planted}_dir"
        source = request.getfixturevalue(fixture)  # skips a family too new for the installed transformers
        folder = request.getfixturevalue("tmp_path_factory").mktemp(f"{family}-{template}")
        shutil.copytree(source, folder, dirs_exist_ok=True)
        (folder / "chat_template.jinja").write_text(shipped_template(template), encoding="utf-8")
        _folders[key] = folder
    return _folders[key]


def reply_start(text: str) -> str:
    """What the text sent to the model holds after the assistant turn opens."""
    assert ASSISTANT in text, text
    return text[text.rindex(ASSISTANT) + len(ASSISTANT):]


def test_two_packagers_ship_the_same_templates():
    """xinference's copies of the Qwen templates are byte-identical to trl's,
    and Qwen3-VL Thinking's (only in xinference) reads no flag and opens the
    block in every generation prompt."""
    for name in set(TRL_TEMPLATES) & set(XINFERENCE_MODELS):
        assert trl_template(name) == xinference_template(name), name
    thinking = xinference_template("qwen3_vl_thinking")
    assert "enable_thinking" not in thinking and "'<|im_start|>assistant\\n<think>\\n'" in thinking


@pytest.mark.parametrize("family, template", CASES)
def test_the_shipped_template_is_what_the_tests_say_and_is_rendered_non_thinking(request, family, template):
    """Rendered as the processor renders it with nothing about thinking, the
    template opens a block exactly where it thinks by default (so the other
    tests would fail without the fix); through the adapter, every prompt kind
    ends where the answer starts, in the template's own non-thinking form."""
    mllm = load_mllm(str(templated(request, family, template)))
    turn = mllm._user_turn(1, EXISTENCE_PROMPT.format(target="red"))
    raw = mllm.processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    assert (open_block(reply_start(raw)) is not None) == THINKS_BY_DEFAULT[template]
    prompts = {
        "verification / relevance": (1, EXISTENCE_PROMPT.format(target="red")),
        "answer": (1, QUESTION + "\n(A) red\n(B) blue\nAnswer with the option's letter from the given choices directly."),
        "target extraction": (0, build_icl_prompt(QUESTION)),
        "global-local answer": (2, QUESTION),
    }
    for kind, (n_images, text) in prompts.items():
        prompt = mllm.build_prompt(n_images, text)
        assert open_block(reply_start(prompt)) is None, kind
        if THINKS_BY_DEFAULT[template] or template == "qwen3_5_nothink":
            assert reply_start(prompt) == EMPTY_BLOCK, kind
        else:
            assert reply_start(prompt) == "", kind
        # the template's own answered turn starts with exactly this prompt
        answered = mllm._render(mllm._user_turn(n_images, text) + [
            {"role": "assistant", "content": [{"type": "text", "text": "B"}]}], add_generation_prompt=False)
        assert answered.startswith(prompt) and answered[len(prompt):].startswith("B"), kind


def _sent_texts(mllm, monkeypatch) -> list[str]:
    """Every text the adapter hands the processor from now on (what the model reads)."""
    sent: list[str] = []
    original = mllm.processor_inputs

    def recording(views, texts, **kwargs):
        sent.extend(texts)
        return original(views, texts, **kwargs)

    monkeypatch.setattr(mllm, "processor_inputs", recording)
    return sent


RUNS = (
    ("vanilla", FAST), ("focus", FAST), ("focus-full", FAST), ("focus-shared", FAST), ("zoomeye", FAST),
    ("focus", FocusConfig(answer_max_new_tokens=3, n_steps=2, answer_scoring="likelihood", target_max_new_tokens=12)),
)
"""Every kind of prompt: the plain answer, target extraction, the relevance
prefill, verification, the answer on the crop, the answer prefill's maps,
ZoomEye's confidences and answer, likelihood scoring of the options."""


def _run_all(mllm, monkeypatch) -> tuple[list[str], list[dict]]:
    sent = _sent_texts(mllm, monkeypatch)
    image = scene((640, 480), (400, 80, 480, 160), seed=7)
    results = []
    for name, config in RUNS:
        result = make_method(name, mllm, config).run(image, QUESTION, OPTIONS)
        record = result.to_json()
        record.pop("cost", None)  # wall time differs run to run
        results.append(record)
    return sent, results


@pytest.mark.parametrize("think, plain", [("qwen3_5_think", "qwen3_5_nothink"), ("qwen3_6", "qwen3_5_nothink")])
def test_a_think_by_default_template_gives_the_answers_of_the_no_think_one(request, monkeypatch, think, plain):
    """Qwen3.5-4B's and Qwen3.6's templates give the same maps, confidences,
    regions and answers as Qwen3.5-2B's no-think template, for every method,
    and every text the model reads has its reply start after the empty block.
    On a model with every layer at full strength, where the last position
    reads the whole prompt: rendered as the template thinks by default, the
    same question gets another confidence."""
    thinking = load_mllm(str(templated(request, "qwen3_5", think, undamped=True)))
    sent, results = _run_all(thinking, monkeypatch)
    assert len(sent) > 20
    for text in sent:
        assert reply_start(text).startswith(EMPTY_BLOCK) and open_block(reply_start(text)) is None
    baseline = load_mllm(str(templated(request, "qwen3_5", plain, undamped=True)))
    plain_sent, plain_results = _run_all(baseline, monkeypatch)
    assert sent == plain_sent
    assert results == plain_results
    image = scene((640, 480), (400, 80, 480, 160), seed=7)
    np.testing.assert_array_equal(thinking.relevance_map(image, "red").grid, baseline.relevance_map(image, "red").grid)
    confidence = thinking.yes_no_confidence([image], ["red"])
    np.testing.assert_array_equal(confidence, baseline.yes_no_confidence([image], ["red"]))
    # what the default rendering would have read: the first token of a reasoning trace
    monkeypatch.setattr(thinking, "build_prompt", lambda n_images, text: thinking.processor.apply_chat_template(
        thinking._user_turn(n_images, text), add_generation_prompt=True, tokenize=False))
    assert abs(float(thinking.yes_no_confidence([image], ["red"])[0]) - float(confidence[0])) > 1e-3


def test_qwen3_vl_thinking_answers_after_the_empty_block_its_template_writes(request, monkeypatch):
    """Qwen3-VL Thinking's template opens the block whatever it is given:
    every prompt is the Instruct release's prompt plus the empty block, as
    the Thinking template closes it in an answered turn."""
    thinking = load_mllm(str(templated(request, "qwen3_vl", "qwen3_vl_thinking")))
    instruct = load_mllm(str(templated(request, "qwen3_vl", "qwen3_vl")))
    assert thinking.reply_opening == "\n</think>\n\n" and instruct.reply_opening == ""
    for n_images, text in ((1, EXISTENCE_PROMPT.format(target="red")), (0, build_icl_prompt(QUESTION))):
        assert thinking.build_prompt(n_images, text) == instruct.build_prompt(n_images, text) + EMPTY_BLOCK
    sent, _ = _run_all(thinking, monkeypatch)
    assert sent and all(reply_start(text).startswith(EMPTY_BLOCK) for text in sent)


def test_the_flag_reaches_the_template_on_every_supported_transformers(qwen):
    """``enable_thinking`` goes through the processor's apply_chat_template to
    the template on the lowest transformers too (Qwen2.5-VL's processor, the
    family the lowest-version CI run has, given Qwen3.5-4B's template)."""
    import copy

    processor = copy.deepcopy(qwen.processor)
    processor.chat_template = shipped_template("qwen3_5_think")
    mllm = load_mllm((qwen.model, processor))
    assert mllm.reply_opening == ""  # the template closed the block itself: the flag arrived
    assert reply_start(mllm.build_prompt(1, EXISTENCE_PROMPT.format(target="red"))) == EMPTY_BLOCK


NEVER_CLOSES = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
"""A template (written for this test) that opens a block in every generation
prompt and never writes a closing one: FOCUS cannot answer outside it."""


def test_a_template_that_cannot_stop_thinking_is_refused_at_load(qwen, qwen_dir, tmp_path, monkeypatch):
    """Refused before the weights load (a 27B model need not be read to be
    refused), and an in-memory model with such a processor alike."""
    import copy

    from focus_engine.mllm import loader

    shutil.copytree(qwen_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / "chat_template.jinja").write_text(NEVER_CLOSES)
    monkeypatch.setattr(loader, "_load_weights", lambda *a, **k: pytest.fail("the weights were loaded"))
    with pytest.raises(FocusModelError, match=r"inside an open <think> block.*no </think>.*not run") as caught:
        load_mllm(str(tmp_path))
    assert "chat_template.jinja" in str(caught.value)  # what to do
    processor = copy.deepcopy(qwen.processor)
    processor.chat_template = NEVER_CLOSES
    with pytest.raises(FocusModelError, match="inside an open <think> block"):
        load_mllm((qwen.model, processor))
