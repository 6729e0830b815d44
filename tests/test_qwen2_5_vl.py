"""Qwen2.5-VL: native-resolution grid, image-only processor, M-RoPE state."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from helpers import PLACES, SIZES, covers_centre, object_box, peak_pixel, scene
from focus_engine import FocusConfig, FocusPipeline, load_mllm
from focus_engine.mllm.qwen2_5_vl import DEFAULT_MAX_PIXELS

def test_loads_without_torchvision(qwen_dir):
    assert importlib.util.find_spec("torchvision") is None  # this environment has none
    mllm = load_mllm(str(qwen_dir))
    assert mllm.family == "qwen2_5_vl"
    assert not hasattr(mllm.processor, "video_processor") or mllm.processor.video_processor is None
    assert mllm.max_pixels <= DEFAULT_MAX_PIXELS


@pytest.mark.parametrize("shape", list(SIZES))
@pytest.mark.parametrize("place", PLACES)
def test_planted_map_peaks_on_object(qwen, shape, place):
    size = SIZES[shape]
    box = object_box(size, place, 140)
    x, y = peak_pixel(qwen.relevance_map(scene(size, box, seed=len(place)), "red"))
    assert box[0] <= x < box[2] and box[1] <= y < box[3], ((x, y), box)


def test_grid_matches_the_processors_own_bookkeeping(qwen):
    image = scene((1000, 600), (10, 10, 100, 100))
    view = qwen.view(image)
    inputs = qwen.processor_inputs([view], [qwen.build_prompt(1, "Is there a red in the image?")])
    t, h, w = inputs["image_grid_thw"][0].tolist()
    rows, cols = view.geometry.shape
    assert (t, h // 2, w // 2) == (1, rows, cols)
    assert int((inputs["input_ids"] == qwen.image_token_id).sum()) == rows * cols
    assert "mm_token_type_ids" in inputs
    assert view.geometry.x_edges[-1] == 1000 and view.geometry.y_edges[-1] == 600


def test_pixel_budget_caps_huge_images(qwen):
    rows, cols = qwen.view(scene((8000, 6000), (10, 10, 200, 200), distractors=0)).geometry.shape
    assert rows * cols * 28 * 28 <= qwen.max_pixels


def test_no_state_leaks_between_calls(qwen):
    """The model keeps rope_deltas between calls (the adapter resets them):
    an image's map must not depend on what ran before it."""
    small = scene((600, 400), (500, 300, 580, 380))
    big = scene((1800, 1200), (100, 100, 260, 260))
    first = qwen.relevance_map(small, "red").grid
    qwen.relevance_map(big, "red")
    assert qwen.model.model.rope_deltas is not None  # the model keeps state ...
    again = qwen.relevance_map(small, "red").grid  # ... which must not change the next call
    np.testing.assert_allclose(first, again, atol=1e-6)


def test_batched_yes_no_equals_one_by_one(qwen):
    crops = [scene((300, 200), (10, 10, 80, 80)), scene((500, 500), (200, 200, 300, 300)), scene((120, 400), (0, 0, 60, 60))]
    targets = ["red", "blue", "red square"]
    batched = qwen.yes_no_confidence(crops, targets, batch_size=3)
    single = np.array([qwen.yes_no_confidence([c], [t])[0] for c, t in zip(crops, targets)])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert ((batched >= 0) & (batched <= 1)).all()


@pytest.mark.parametrize("shape", list(SIZES))
def test_pipeline_roi_covers_object(qwen, shape):
    size = SIZES[shape]
    box = object_box(size, "bottom-right", 140)
    result = FocusPipeline(qwen, FocusConfig(n_steps=2)).run(scene(size, box, seed=5), "Where?", targets=["red"])
    assert any(covers_centre(r.box, box) for r in result.rois[:3])
    assert result.family == "qwen2_5_vl" and result.cost.forward_passes >= 1


def test_values_equal_v_proj(qwen):
    image = scene((400, 300), (10, 10, 80, 80))
    prefill = qwen.prefill(image, "red")
    text = qwen.build_prompt(1, "Is there a red in the image? Answer Yes or No.")
    inputs = qwen._to_device(qwen.processor_inputs([qwen.view(image)], [text]))
    with torch.inference_mode():
        out = qwen.model(**inputs, output_hidden_states=True)
    kv_heads = qwen.text_config.num_key_value_heads
    for index, layer in enumerate(qwen._decoder_layers()):
        hidden = out.hidden_states[index][0]
        expected = layer.self_attn.v_proj(layer.input_layernorm(hidden)).reshape(hidden.shape[0], kv_heads, -1)
        torch.testing.assert_close(prefill.cache.layers[index].values[0], expected.transpose(0, 1), rtol=1e-4, atol=1e-5)


def test_pixel_budget_from_the_config(qwen_dir):
    mllm = load_mllm(str(qwen_dir))
    image = scene((2000, 1000), (1800, 800, 1950, 950))
    small = mllm.relevance_map(image, "red", config=FocusConfig(max_pixels=28 * 28 * 32))
    rows, cols = small.grid.shape
    assert rows * cols <= 32 and mllm.max_pixels == 28 * 28 * 32
    large = mllm.relevance_map(image, "red", config=FocusConfig(max_pixels=28 * 28 * 200))
    assert 32 < large.grid.size <= 200
    with pytest.raises(Exception, match="max_pixels"):
        FocusConfig(min_pixels=28 * 28 * 10, max_pixels=28 * 28 * 5)


def test_chat_template_json_is_used_by_the_image_only_processor(qwen_dir, tmp_path):
    import json
    import shutil

    for item in qwen_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    template = "{% for m in messages %}<<{{ m['content'][-1]['text'] }}>>{% endfor %}"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    mllm = load_mllm(str(tmp_path))
    assert mllm.build_prompt(0, "hello") == "<<hello>>"
