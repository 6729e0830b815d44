"""Where the method would silently differ from the paper on a real
checkpoint (issue 21): what each test guards fails without its fix."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from helpers import scene
from focus_engine import FocusConfig, FocusPipeline, load_mllm
from focus_engine.answer import answer_question
from focus_engine.config import resolve_config
from focus_engine.errors import FocusError, FocusModelError, NonFiniteError
from focus_engine.mllm.runtime import Decoded
from focus_engine.methods.setup import merged_config
from focus_engine.reading import read_choice
from focus_engine.relevance import _layer_part, accumulate
from focus_engine.rois import ROI

OV_PINPOINTS = [[384 * r, 384 * c] for r in range(1, 7) for c in range(1, 7)]
"""llava-onevision-qwen2-7b-ov-hf's image_grid_pinpoints (384..2304 px, 6x6)."""


def real_size_onevision(tokenizer):
    """An adapter with LLaVA-OneVision-7B's geometry (SigLIP 384 px, 14-px
    patches, the 6x6 pinpoints, anyres_max_9) on a weightless (meta) model:
    enough for the processor and the visual layout, never run."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    try:  # transformers 5: the PIL image processor (the other needs torchvision)
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil as LlavaOnevisionImageProcessor,
        )
    except ImportError:  # transformers 4.x
        from transformers import LlavaOnevisionImageProcessor

    from focus_engine.mllm.llava_onevision import image_only_processor_class

    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                           num_hidden_layers=26, num_attention_heads=16, image_size=384, patch_size=14),
        text_config=dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, vocab_size=len(tokenizer)),
        image_grid_pinpoints=OV_PINPOINTS, vision_aspect_ratio="anyres_max_9", vision_feature_select_strategy="full",
        vision_feature_layer=-1, image_token_index=image_token_id,
    )
    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration(config)
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": 384, "width": 384}, crop_size={"height": 384, "width": 384}, image_grid_pinpoints=OV_PINPOINTS)
    processor = image_only_processor_class()(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=729,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
        chat_template=tokenizer.chat_template or None)
    return load_mllm((model, processor))


# ------------------------------------------------ 1. OneVision's answer view
def test_onevision_answer_gives_every_image_its_anyres_tiles(onevision, monkeypatch):
    """Since transformers 4.52 images given per sample (nested) get only the
    384-px base view when a prompt has several; the answer passes them flat,
    so each keeps its AnyRes tiles, as in the paper (4.46)."""
    real = real_size_onevision(copy.deepcopy(onevision.tokenizer))
    captured = {}

    def decode(inputs, cache, max_new_tokens, should_stop, **options):
        captured["ids"] = inputs["input_ids"][0]
        return Decoded("A", [1.0])

    monkeypatch.setattr(real, "_decode", decode)
    image = scene((2000, 1500), (300, 300, 420, 420), seed=3)
    rois = [ROI(box=(200, 200, 900, 700), target="red", score=1.0, confidence=0.9),
            ROI(box=(1200, 800, 1900, 1400), target="blue", score=1.0, confidence=0.9)]
    config = resolve_config(real, FocusConfig())
    assert config.answer_crops == "per_target" and config.answer_with_global
    answer = answer_question(real, image, "Which is larger?", ["red", "blue"], rois, config)
    assert answer.view.mode == "crops" and len(answer.view.images) == 2  # one image per target, as the paper
    shown = [image, *answer.view.images]

    def alone(picture):  # the visual tokens one image gets in a prompt of its own
        ids = real.processor_inputs([real.view(picture)], [real.build_prompt(1, "x")])["input_ids"][0]
        return int((ids == real.image_token_id).sum())

    singles = [alone(picture) for picture in shown]
    assert int((captured["ids"] == real.image_token_id).sum()) == sum(singles)
    assert all(count > 729 + 1 for count in singles)  # more than the base view: AnyRes tiles
    # the trap the flat list avoids: the same images nested per sample get the base view only
    views = [real.view(picture) for picture in shown]
    nested = real.processor(images=[[im for v in views for im in v.images]], text=[real.build_prompt(3, "x")],
                            return_tensors="pt")
    assert int((nested["input_ids"][0] == real.image_token_id).sum()) < sum(singles)


def test_per_target_crops_fall_back_to_the_union_past_the_cap():
    from focus_engine.answer import MAX_ANSWER_CROPS, compose_view

    image = Image.new("RGB", (3000, 3000))
    many = [ROI(box=(i * 400, 0, i * 400 + 100, 100), target=f"t{i}", score=1.0) for i in range(MAX_ANSWER_CROPS + 1)]
    config = FocusConfig(answer_crops="per_target")
    assert compose_view(image, many[:2], config).mode == "crops"
    assert compose_view(image, many, config).mode in ("crop", "canvas")
    assert compose_view(image, many[:2], FocusConfig(answer_crops="union")).mode == "crop"


def test_answer_view_defaults_per_family(planted, onevision, qwen):
    for mllm, crops, with_global in ((planted, "union", False), (onevision, "per_target", True),
                                     (qwen, "union", False)):
        config = resolve_config(mllm, FocusConfig())
        assert (config.answer_crops, config.answer_with_global) == (crops, with_global)
    assert resolve_config(qwen, FocusConfig(answer_with_global=True)).answer_with_global  # ZoomEye's Qwen view


# ------------------------------------------------ 2. counting questions
def test_every_proposal_of_a_counting_question_is_verified(planted):
    image = scene((1600, 900), (1300, 100, 1420, 220), seed=5)
    result = FocusPipeline(planted, FocusConfig(n_steps=2, overrun=False, n_anchors=8)).run(
        image, "How many red squares are there?", targets=["all red"])  # type-2: not bounded by n_steps
    assert result.question_type == 2 and len(result.rois) > 2  # more than n_steps
    assert all(r.confidence is not None for r in result.rois)
    assert result.cost.stage_forward_passes["ranking"] == len(result.rois)
    single = FocusPipeline(planted, FocusConfig(n_steps=1, overrun=True, max_overrun=1, n_anchors=8)).run(
        image, "What colour is the square?", targets=["red"])
    assert sum(r.confidence is not None for r in single.rois) <= 2  # type-1 keeps its budget


# ------------------------------------------------ 3. yes/no token ids
def _tokenizer_with(normalizer):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "\u2581": 1, "Yes": 2, "No": 3, "X": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizer, normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_a_token_shared_by_yes_and_no_is_dropped(planted):
    """A legacy Llama tokenizer.json encodes " Yes" / " No" as "▁" + word: the
    "▁" would count for both answers and pull every confidence to 0.5."""
    from tokenizers import normalizers

    legacy = copy.copy(planted)
    legacy.__dict__.pop("yes_no_token_ids", None)  # looked up afresh for the new tokenizer
    legacy.tokenizer = _tokenizer_with(normalizers.Replace("\u2581", "\u2581"))
    assert legacy.tokenizer.encode(" Yes", add_special_tokens=False)[0] == 1  # the overlap is real
    assert legacy.tokenizer.encode(" No", add_special_tokens=False)[0] == 1
    assert legacy.yes_no_token_ids == ([2], [3])
    blind = copy.copy(planted)  # "Yes" and "No" both read as "X": nothing tells them apart
    blind.__dict__.pop("yes_no_token_ids", None)
    blind.tokenizer = _tokenizer_with(normalizers.Sequence([normalizers.Replace("Yes", "X"),
                                                            normalizers.Replace("No", "X")]))
    with pytest.raises(FocusModelError, match="same token"):
        blind.yes_no_token_ids


# ------------------------------------------------ 4. overflow is an error
def test_nan_confidences_and_maps_are_clear_errors(planted, monkeypatch):
    image = scene((640, 480), (100, 100, 220, 220))
    broken = copy.copy(planted)
    real_forward = planted.model.forward

    class NaNLogits(torch.nn.Module):
        def forward(self, *args, **kwargs):
            out = real_forward(*args, **kwargs)
            out.logits = torch.full_like(out.logits, float("nan"))
            return out

    monkeypatch.setattr(broken, "model", copy.copy(planted.model))
    monkeypatch.setattr(broken.model, "forward", NaNLogits().forward)
    with pytest.raises(NonFiniteError, match="bf16"):
        broken.yes_no_confidence([image], ["red"])
    from focus_engine.kv import Prefill

    real_vectors = Prefill.layer_vectors
    monkeypatch.setattr(Prefill, "layer_vectors",
                        lambda self, layer, source: torch.full_like(real_vectors(self, layer, source), float("inf")))
    with pytest.raises(NonFiniteError, match="relevance map") as caught:
        planted.relevance_map(image, "red")
    assert isinstance(caught.value, FocusError) and "fp32" in str(caught.value)


# ------------------------------------------------ 5. presets
def paper_config(family, dataset="other", **settings):
    return merged_config(family, preset="paper", preset_dataset=dataset, **settings)


def test_the_paper_preset_per_family_and_dataset():
    llava_v, llava_hr = paper_config("llava", "vstar"), paper_config("llava", "hrbench")
    assert (llava_v.anchor_spacing, llava_hr.anchor_spacing, llava_v.s_max, llava_v.n_anchors) == (2.0, 3.0, 5, None)
    ov_v, ov_mme = paper_config("llava_onevision", "vstar"), paper_config("llava_onevision", "mme")
    assert (ov_v.s_max, ov_mme.s_max, ov_v.n_anchors, ov_v.anchor_spacing) == (9, 5, 30, 2.0)
    for config in (llava_v, ov_mme, paper_config("qwen2_5_vl")):
        assert config.extent_floor is None and config.preset == "paper"
        # the paper's text where the default departs (docs/how_it_works.md, "The paper preset against the paper's text")
        assert (config.clamp_negative, config.skip_stop_words, config.verify_answer_hint) == (True, False, False)
        assert (config.verify_stop, config.overrun, config.max_overrun) == (None, True, None)
        assert (config.far_apart_measure, config.count_on_canvas) == ("distance", True)
    assert FocusConfig().extent_floor is not None and FocusConfig().preset == "default"
    assert paper_config("llava", "vstar", n_steps=2).n_steps == 2
    assert merged_config("llava") == FocusConfig(preset="default", preset_dataset="other")
    with pytest.raises(FocusError):
        paper_config("llava", "coco")


def test_the_paper_preset_from_the_command_line(tmp_path, capsys):
    from focus_engine.bench.world import WorldSpec, make_synthetic
    from focus_engine.cli import main

    import json

    spec = WorldSpec(shapes=("circle", "square", "triangle", "star"), n_options=3, scene_long_side=(480, 560), distractors=(5, 7),
                     question_mix={"label": 1.0})
    make_synthetic(tmp_path / "set", seed=12, n=1, spec=spec)
    out = tmp_path / "out"
    assert main(["bench", "run", "--data", str(tmp_path / "set"), "--methods", "no-ranking", "--preset", "paper",
                 "--max-new-tokens", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "preset: paper, for llava on vstar" in err and "answers read strictly" in err  # the paper's scoring
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["preset"] == "paper" and results["settings"]["parse"] == "strict"
    assert results["runs"][0]["config"]["anchor_spacing"] == 2.0 and results["runs"][0]["config"]["extent_floor"] is None
    for flags, parse in ((["--methods", "focus-paper"], "strict"), (["--preset", "paper", "--parse", "lenient"], "lenient"),
                         (["--methods", "vanilla,focus-paper"], "lenient")):
        again = tmp_path / f"out_{len(flags)}_{parse}_{flags[1]}"
        assert main(["bench", "run", "--data", str(tmp_path / "set"), "--max-new-tokens", "2", "--out", str(again),
                     *(flags if "--methods" in flags else ["--methods", "no-ranking", *flags])]) == 0
        assert json.loads((again / "results.json").read_text())["settings"]["parse"] == parse, flags


# ------------------------------------------------ 6. Fig. 7's normalisation
def test_fig7_normalisation_read_literally():
    """``X /= X.sum(dim=-1)`` without keepdim on the full [seq, seq] matrix
    divides element (t, v) by row v's sum."""
    torch.manual_seed(0)
    flat = torch.nn.functional.normalize(torch.randn(12, 8), dim=-1)
    queries, visual = torch.tensor([9, 10]), torch.arange(1, 7)
    residual = (flat @ flat.T).clamp_min(0) + torch.eye(12)
    residual = residual * 0.5
    literal = residual / residual.sum(dim=-1)  # numpy-style broadcast over the last axis, as Fig. 7 writes it
    by_row = residual / residual.sum(dim=-1, keepdim=True)
    got_visual = _layer_part(flat, queries, visual, FocusConfig(row_normalisation="visual"))
    got_target = _layer_part(flat, queries, visual, FocusConfig(row_normalisation="target"))
    assert torch.allclose(got_visual, literal[queries][:, visual], atol=1e-6)
    assert torch.allclose(got_target, by_row[queries][:, visual], atol=1e-6)
    assert not torch.allclose(got_visual / got_visual.sum(-1, keepdim=True), got_target / got_target.sum(-1, keepdim=True))


def test_both_normalisations_find_the_object(planted):
    image = scene((1200, 800), (900, 100, 1000, 200), seed=6)
    for mode in ("target", "visual"):
        x0, y0, x1, y1 = planted.relevance_map(image, "red", config=FocusConfig(row_normalisation=mode)).peak_box()
        assert x1 > 900 and x0 < 1000 and y1 > 100 and y0 < 200, mode


# ------------------------------------------------ 7. layers on several devices
def test_layer_parts_are_combined_on_the_first_layers_device():
    """With device_map="auto" over GPUs each layer's cache is on its own GPU;
    here a second device type stands in for the second GPU (meta)."""
    first, other = torch.ones(2, 3, device="meta"), torch.ones(2, 3)
    with pytest.raises(RuntimeError, match="device"):
        first + other  # what the per-layer sum did before
    combined = accumulate(accumulate(None, first), other)
    assert combined.device.type == "meta" and combined.shape == (2, 3)
    assert accumulate(torch.ones(2), torch.ones(2)).tolist() == [2.0, 2.0]


# ------------------------------------------------ 8. strict scoring
def test_strict_parsing_takes_only_an_exact_letter():
    options = ["red", "blue", "green"]
    assert read_choice("B", options, parse="strict") == 1 and read_choice(" C\n", options, parse="strict") == 2
    for loose in ("B.", "(B)", "blue", "The answer is B", "D"):
        assert read_choice(loose, options, parse="strict") is None, loose
    assert read_choice("(B)", options) == 1 and read_choice("blue", options) == 1
