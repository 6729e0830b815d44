"""Qwen3-VL: 32-px tokens, its pixel budget, DeepStack, the MoE variant, a
real-size geometry and the transformers it needs (what every family must do
is in test_adapter_contract.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from families import FAMILY
from helpers import peak_pixel, real_size_qwen, scene
from focus_engine import FocusModelError, load_mllm
from focus_engine.mllm.hf_loading import check_family_transformers
from focus_engine.mllm.qwen3_vl import QWEN3_VL_MAX_PIXELS, Qwen3VLAdapter

pytestmark = pytest.mark.skipif(bool(FAMILY["qwen3_vl"].skip_reason), reason=FAMILY["qwen3_vl"].skip_reason or "")

REAL_SIZES = [(4032, 3024), (3840, 2160), (1920, 1080), (1024, 1024), (640, 480), (300, 5000), (90, 70)]
"""Photo, 4K, HD, square, VGA, a tall strip and a thumbnail."""


def real_size_qwen3_vl(tokenizer, **image_settings):
    """Qwen3-VL-2B-Instruct's geometry (24-block vision tower, DeepStack at
    vision layers 5, 11, 17; 28 decoder layers) on a weightless model."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    vision = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                  deepstack_visual_indexes=[5, 11, 17])
    text = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                num_key_value_heads=8, head_dim=128,
                rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20],
                                 "mrope_interleaved": True})
    return real_size_qwen(Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLAdapter, tokenizer, vision, text,
                          **image_settings)


@pytest.fixture(scope="module")
def real_size(qwen3_vl):
    return real_size_qwen3_vl(copy.deepcopy(qwen3_vl.tokenizer))


def processor_tokens(mllm, image) -> tuple[int, tuple[int, int, int]]:
    """The image tokens and (t, h, w) patch grid the processor gives ``image`` as the adapter shows it."""
    inputs = mllm.processor_inputs([mllm.view(image)], [mllm.build_prompt(1, "Is there a red in the image?")])
    return int((inputs["input_ids"] == mllm.image_token_id).sum()), tuple(inputs["image_grid_thw"][0].tolist())


@pytest.mark.parametrize("size", REAL_SIZES)
def test_real_size_token_counts_equal_the_processors(real_size, size):
    """One token per 32x32 px of the resized image; the grid the adapter lays
    over the original image has as many cells as the processor gives tokens."""
    image = scene(size, (0, 0, 40, 40), distractors=0)
    view = real_size.view(image)
    rows, cols = view.geometry.shape
    tokens, (t, h, w) = processor_tokens(real_size, image)
    assert (t, h // 2, w // 2) == (1, rows, cols) and tokens == rows * cols
    assert view.images[0].size == (cols * 32, rows * 32)
    assert view.geometry.x_edges[-1] == size[0] and view.geometry.y_edges[-1] == size[1]
    assert 64 <= rows * cols <= 1280  # the processor's minimum (65,536 px) and our cap


def test_real_size_budget_is_the_processors_capped(real_size, qwen3_vl):
    assert real_size.factor == 32 and real_size.min_pixels == 65536
    assert real_size.max_pixels == QWEN3_VL_MAX_PIXELS == 32 * 32 * 1280  # the processor's 16.7 MP, capped
    uncapped = real_size.with_settings(max_pixels=16777216)
    image = scene((3840, 2160), (0, 0, 40, 40), distractors=0)
    tokens, _ = processor_tokens(uncapped, image)
    rows, cols = uncapped.view(image).geometry.shape
    assert tokens == rows * cols > 1280  # a 4K image: about 8,000 tokens without the cap


def test_deepstack_is_at_full_strength_and_read_where_it_has_arrived(qwen3_vl):
    """The planted model's three DeepStack features are as large as the main
    visual feature; they are added to the image positions after decoder
    layers 0, 1, 2, so the input of layer k (1..3) is layer k-1's output plus
    the k-th feature, and the default layers (3..5) all come after them."""
    mllm = qwen3_vl
    image = scene((640, 480), (300, 200, 400, 300), distractors=0)
    inputs = mllm._model_inputs(mllm.processor_inputs([mllm.view(image)], [mllm.build_prompt(1, "red")]))
    with torch.inference_mode():
        features = mllm.model.model.get_image_features(pixel_values=inputs["pixel_values"],
                                                       image_grid_thw=inputs["image_grid_thw"])
        out = mllm.model(**inputs, output_hidden_states=True)
    main = torch.cat(list(features.pooler_output))
    deepstack = [torch.cat(list(level)) for level in features.deepstack_features]
    assert len(deepstack) == 3 == len(mllm.model.config.vision_config.deepstack_visual_indexes)
    for level in deepstack:
        assert level.norm(dim=-1).mean() > 0.3 * main.norm(dim=-1).mean()  # not zeroed: comparable to the main feature
    from test_adapter_contract import layer_inputs

    seen = layer_inputs(mllm, inputs)
    image_positions = inputs["input_ids"][0] == mllm.image_token_id
    for k in range(1, 4):  # hidden_states[k] is layer k-1's output, before the k-th DeepStack feature
        added = seen[k][image_positions] - out.hidden_states[k][0][image_positions]
        torch.testing.assert_close(added, deepstack[k - 1], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(seen[k][~image_positions], out.hidden_states[k][0][~image_positions])
    assert mllm.default_layers()[0] >= len(deepstack)  # the map reads layers that carry every DeepStack feature


def test_a_map_of_the_layers_before_deepstack_has_arrived_is_weaker(qwen3_vl):
    """On the planted model a colour word is what an image token carries once
    every DeepStack feature is in: the default layers find the object, and
    the map from layers that miss part of DeepStack still peaks there but
    less sharply (a check that the additions reach the values the map reads)."""
    image = scene((1200, 800), (900, 100, 1060, 260), seed=2)
    default = qwen3_vl.relevance_map(image, "red")
    x, y = peak_pixel(default)
    assert 900 <= x < 1060 and 100 <= y < 260
    early = qwen3_vl.relevance_map(image, "red", layers=(0, 1))  # layer 0: no DeepStack feature yet
    assert not np.allclose(early.grid, default.grid, atol=1e-3)


def test_the_moe_variant_is_the_same_adapter(tmp_path):
    from focus_engine.testing import build_planted_qwen3_vl

    mllm = load_mllm(str(build_planted_qwen3_vl(tmp_path / "moe", seed=11, moe=True)))
    assert type(mllm) is Qwen3VLAdapter and mllm.family == "qwen3_vl"
    assert mllm.model.config.model_type == "qwen3_vl_moe"
    image = scene((1600, 900), (1400, 700, 1560, 860), seed=4)
    x, y = peak_pixel(mllm.relevance_map(image, "red"))
    assert 1400 <= x < 1560 and 700 <= y < 860


def test_an_older_transformers_is_refused_with_the_version_and_the_pip_command():
    with pytest.raises(FocusModelError) as info:
        check_family_transformers("qwen3_vl", Qwen3VLAdapter.description, Qwen3VLAdapter.min_transformers,
                                  version="4.56.2")
    message = str(info.value)
    assert "transformers >= 4.57" in message and "4.56.2 is installed" in message
    assert 'pip install "transformers>=4.57,<6"' in message
    check_family_transformers("qwen3_vl", "Qwen3-VL", (4, 57), version="4.57.0")
    check_family_transformers("qwen3_vl", "Qwen3-VL", (4, 57), version="5.25.0")


def test_loading_a_folder_on_an_older_transformers_stops_before_its_config(qwen3_vl_dir, monkeypatch):
    """An older transformers cannot read a qwen3_vl config at all: the folder's
    model_type is read first, and the family's version named."""
    import focus_engine.mllm.hf_loading as hf_loading

    monkeypatch.setattr(hf_loading, "installed_transformers", lambda: "4.56.2")
    with pytest.raises(FocusModelError, match=r"needs transformers >= 4\.57.*pip install"):
        load_mllm(str(qwen3_vl_dir))
