"""Qwen2.5-VL: the native-resolution grid and its pixel budget (what every
family must do is in test_adapter_contract.py)."""

from __future__ import annotations

import pytest

from helpers import scene
from focus_engine import FocusConfigError, load_mllm
from focus_engine.mllm.qwen2_5_vl import DEFAULT_MAX_PIXELS


def test_the_default_budget_is_capped(qwen):
    assert qwen.max_pixels <= DEFAULT_MAX_PIXELS


def test_grid_matches_the_processors_own_bookkeeping(qwen):
    image = scene((1000, 600), (10, 10, 100, 100))
    view = qwen.view(image)
    inputs = qwen.processor_inputs([view], [qwen.build_prompt(1, "Is there a red in the image?")])
    t, h, w = inputs["image_grid_thw"][0].tolist()
    rows, cols = view.geometry.shape
    assert (t, h // 2, w // 2) == (1, rows, cols)
    assert int((inputs["input_ids"] == qwen.image_token_id).sum()) == rows * cols
    assert ("mm_token_type_ids" in inputs) == qwen.needs_mm_token_types  # transformers 5 positions M-RoPE with them
    assert view.geometry.x_edges[-1] == 1000 and view.geometry.y_edges[-1] == 600


def test_pixel_budget_caps_huge_images(qwen):
    rows, cols = qwen.view(scene((8000, 6000), (10, 10, 200, 200), distractors=0)).geometry.shape
    assert rows * cols * 28 * 28 <= qwen.max_pixels


def test_pixel_budget_from_the_settings(qwen_dir, qwen):
    image = scene((2000, 1000), (1800, 800, 1950, 950))
    small = load_mllm(str(qwen_dir), settings={"max_pixels": 28 * 28 * 32})
    rows, cols = small.relevance_map(image, "red").grid.shape
    assert rows * cols <= 32 and small.max_pixels == 28 * 28 * 32
    large = qwen.with_settings(max_pixels=28 * 28 * 200)
    assert 32 < large.relevance_map(image, "red").grid.size <= 200
    assert large.model is qwen.model and qwen.max_pixels == 28 * 28 * 400  # the original keeps its processor's budget
    with pytest.raises(FocusConfigError, match="max_pixels"):
        qwen.with_settings(min_pixels=28 * 28 * 10, max_pixels=28 * 28 * 5)
    with pytest.raises(FocusConfigError, match="max_grid_side is not a setting of the qwen2_5_vl family"):
        load_mllm(str(qwen_dir), settings={"max_grid_side": 12})


def test_chat_template_json_is_used_by_the_image_only_processor(qwen_dir, tmp_path):
    import json
    import shutil

    for item in qwen_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    template = "{% for m in messages %}<<{{ m['content'][-1]['text'] }}>>{% endfor %}"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    mllm = load_mllm(str(tmp_path))
    assert mllm.build_prompt(0, "hello") == "<<hello>>"
