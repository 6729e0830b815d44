"""Multiple choice by option likelihood (V*Bench's "logits matching"): each
option scored as the assistant's reply, one forward pass per option, the
lowest mean cross-entropy wins."""

from __future__ import annotations

import pytest
import torch

from families import FAMILIES
from helpers import scene
from focus_engine import FocusConfig
from focus_engine.methods.vanilla import Vanilla
from focus_engine.errors import FocusConfigError

OPTIONS = ["red", "blue", "green"]
QUESTION = "What colour is the square?"


@pytest.mark.parametrize("family", [f.planted for f in FAMILIES])
def test_option_losses_are_the_replys_cross_entropy(request, family):
    mllm = request.getfixturevalue(family)
    image = scene((640, 480), (100, 100, 220, 220), colour="blue")
    losses = mllm.option_losses(QUESTION, OPTIONS, images=[image])
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    # the same number by hand for one option: prompt + reply in one pass, loss over the reply's tokens
    view = mllm.view(image)
    prompt = mllm.build_prompt(1, QUESTION)
    reply = mllm.assistant_reply(prompt, 1, QUESTION, "green")
    assert reply.strip().startswith("green") and len(reply.strip()) > len("green")  # the turn's ending comes with it
    short = mllm.processor_inputs([view], [prompt])["input_ids"][0]
    full = mllm.processor_inputs([view], [prompt + reply])
    ids = full["input_ids"][0]
    assert torch.equal(ids[: len(short)], short)
    with torch.no_grad():
        logits = mllm.model(**mllm._model_inputs(full)).logits[0]
    by_hand = torch.nn.functional.cross_entropy(logits[len(short) - 1:-1].float(), ids[len(short):])
    assert losses[2] == pytest.approx(float(by_hand), rel=1e-5)


def test_the_lowest_loss_is_the_answer_and_nothing_is_generated(planted, monkeypatch):
    image = scene((640, 480), (100, 100, 220, 220), colour="blue")
    monkeypatch.setattr(planted, "option_losses", lambda text, options, images=(): [2.0, 0.5, 1.0])
    monkeypatch.setattr(planted, "generate", lambda *a, **k: pytest.fail("likelihood scoring must not generate"))
    answer = Vanilla(planted, FocusConfig(answer_scoring="likelihood")).run(image, QUESTION, OPTIONS)
    assert answer.answer == "blue" and answer.answer_option == "B"


def test_the_benchmark_scores_by_likelihood(planted_small, tmp_path):
    from focus_engine.bench.datasets import load_dataset
    from focus_engine.bench.runner import run_benchmark
    from focus_engine.bench.world import WorldSpec, make_synthetic

    spec = WorldSpec(shapes=("circle", "square", "triangle", "star"), n_options=3, scene_long_side=(480, 560),
                     distractors=(5, 7), question_mix={"label": 1.0})
    make_synthetic(tmp_path / "data", seed=11, n=2, spec=spec)
    items = load_dataset(tmp_path / "data")
    config = FocusConfig(answer_scoring="likelihood")
    result = run_benchmark(planted_small, items, "vanilla", config, [1], progress=False)
    for record, item in zip(result.runs[0].records, items):
        losses = planted_small.option_losses(item.question, item.options, images=[item.load_image()])
        assert record["chosen_index"] == min(range(len(losses)), key=losses.__getitem__)
        assert record["answer_text"] == item.options[record["chosen_index"]]


def test_likelihood_scoring_is_checked():
    with pytest.raises(FocusConfigError, match="answer_scoring"):
        FocusConfig(answer_scoring="vote")
    with pytest.raises(FocusConfigError, match="cannot be gated"):
        FocusConfig(answer_scoring="likelihood", gate_threshold=0.5)
