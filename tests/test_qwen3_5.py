"""Qwen3.5: FOCUS on a hybrid-attention model (what every family must do is
in test_adapter_contract.py): which layers a map reads under each
``value_layers`` setting, the keys ablation, a real-size geometry and the
transformers it needs."""

from __future__ import annotations

import copy

import pytest

from families import FAMILY
from helpers import peak_pixel, real_size_qwen, scene
from focus_engine import FocusConfigError, FocusModelError
from focus_engine.mllm.hf_loading import check_family_transformers
from focus_engine.mllm.qwen3_5 import Qwen3_5Adapter

pytestmark = pytest.mark.skipif(bool(FAMILY["qwen3_5"].skip_reason), reason=FAMILY["qwen3_5"].skip_reason or "")

IMAGE = ((1500, 900), (1200, 600, 1360, 760))


def test_the_planted_model_has_the_released_layer_pattern(qwen3_5):
    assert qwen3_5.full_layers == (3, 7) and qwen3_5.recurrent_layers == frozenset({0, 1, 2, 4, 5, 6})
    assert qwen3_5.settings.value_layers == "all"


@pytest.mark.parametrize("value_layers", ["all", "full_attention"])
def test_each_reading_localises(qwen3_5, value_layers):
    mllm = qwen3_5.with_settings(value_layers=value_layers)
    size, box = IMAGE
    prefill = mllm.prefill(scene(size, box, seed=3), "red")
    captured = set(prefill.layer_values or {})
    assert captured == (set(mllm.recurrent_layers) if value_layers == "all" else set())
    assert prefill.map_layers((4, 8)) == ([4, 5, 6, 7] if value_layers == "all" else [7])
    x, y = peak_pixel(mllm.relevance_map(scene(size, box, seed=3), "red"))
    assert box[0] <= x < box[2] and box[1] <= y < box[3]


def test_keys_ablation_reads_both_kinds_of_layer(qwen3_5):
    size, box = IMAGE
    for value_layers in ("all", "full_attention"):
        rmap = qwen3_5.with_settings(value_layers=value_layers).relevance_map(scene(size, box), "red", source="keys")
        assert rmap.source == "keys" and rmap.grid.max() == pytest.approx(1.0)


def test_a_range_of_linear_layers_only_is_refused_when_they_are_not_read(qwen3_5):
    size, box = IMAGE
    only_full = qwen3_5.with_settings(value_layers="full_attention")
    with pytest.raises(FocusConfigError, match="no per-token value vectors"):
        only_full.relevance_map(scene(size, box), "red", layers=(4, 7))
    qwen3_5.relevance_map(scene(size, box), "red", layers=(4, 7))  # read with the captured values


def test_value_layers_setting_is_checked(qwen3_5):
    with pytest.raises(FocusConfigError, match="value_layers"):
        qwen3_5.with_settings(value_layers="linear")


def test_an_older_transformers_is_refused_with_the_version_and_the_pip_command():
    with pytest.raises(FocusModelError, match=r'transformers >= 5\.2.*pip install "transformers>=5\.2,<6"'):
        check_family_transformers("qwen3_5", Qwen3_5Adapter.description, Qwen3_5Adapter.min_transformers,
                                  version="5.1.0")


def real_size_qwen3_5(tokenizer):
    """A released-size Qwen3.5 geometry (24 decoder layers in the 3:1
    linear/full pattern) on a weightless model."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    vision = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048)
    text = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=24, num_attention_heads=8,
                num_key_value_heads=2, head_dim=256, linear_num_value_heads=16, linear_num_key_heads=16,
                rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                                 "mrope_section": [11, 11, 10], "mrope_interleaved": True})
    return real_size_qwen(Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3_5Adapter, tokenizer, vision, text)


@pytest.mark.parametrize("size", [(4032, 3024), (1920, 1080), (640, 480), (300, 5000), (90, 70)])
def test_real_size_token_counts_equal_the_processors(qwen3_5, size):
    real = real_size_qwen3_5(copy.deepcopy(qwen3_5.tokenizer))
    assert real.full_layers == tuple(range(3, 24, 4)) and real.default_layers() == (11, 24)
    image = scene(size, (0, 0, 40, 40), distractors=0)
    view = real.view(image)
    rows, cols = view.geometry.shape
    inputs = real.processor_inputs([view], [real.build_prompt(1, "Is there a red in the image?")])
    t, h, w = inputs["image_grid_thw"][0].tolist()
    assert (t, h // 2, w // 2) == (1, rows, cols)
    assert int((inputs["input_ids"] == real.image_token_id).sum()) == rows * cols <= 1280
