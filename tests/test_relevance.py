"""Relevance maps from value vectors: planted-signal localisation on wide,
tall and square images with the object at every edge, exactness of the values
read from the cache, and the ablation sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import PLACES, SIZES, covers_centre, object_box, peak_pixel, scene
from focus_engine import FocusConfig, FocusPipeline, RelevanceMap
from focus_engine.errors import FocusConfigError, FocusInputError

def overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


@pytest.mark.parametrize("shape", list(SIZES))
@pytest.mark.parametrize("place", PLACES)
def test_planted_map_peaks_on_object(planted, shape, place):
    size = SIZES[shape]
    box = object_box(size, place, int(max(size) / 24 * 1.4))  # about 1.4 encoder patches
    image = scene(size, box, seed=len(place))
    rmap = planted.relevance_map(image, "red square")
    assert isinstance(rmap, RelevanceMap)
    assert rmap.grid.dtype == np.float32 and rmap.grid.min() >= 0.0 and rmap.grid.max() == pytest.approx(1.0)
    assert overlaps(rmap.peak_box(), box), (rmap.peak_box(), box)
    full = rmap.to_image()
    assert full.shape == (size[1], size[0]) and full.dtype == np.float32
    # the pixel-level map peaks on the object
    x, y = peak_pixel(rmap)
    x0, y0, x1, y1 = box
    assert x0 <= x < x1 and y0 <= y < y1, ((x, y), box)
    nearest = rmap.to_image(interpolation="nearest")
    assert nearest.shape == full.shape and nearest[y0:y1, x0:x1].max() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", list(SIZES))
@pytest.mark.parametrize("place", ("right", "bottom", "top-left"))
def test_planted_other_geometry(planted_small, shape, place):
    """224 px / patch 16 (14x14 tokens), another seed and depth."""
    size = SIZES[shape]
    width, height = size
    side = int(max(size) / 14 * 1.4)
    x0 = 0 if "left" in place else (width - side if "right" in place else (width - side) // 2)
    y0 = 0 if "top" in place else (height - side if "bottom" in place else (height - side) // 2)
    box = (x0, y0, x0 + side, y0 + side)
    rmap = planted_small.relevance_map(scene(size, box, colour="purple", seed=3), "purple")
    assert rmap.grid.shape[0] * rmap.grid.shape[1] <= 14 * 14
    assert overlaps(rmap.peak_box(), box)


@pytest.mark.parametrize("shape", list(SIZES))
def test_pipeline_roi_covers_planted_object(planted, shape):
    size = SIZES[shape]
    box = object_box(size, "right" if shape != "tall" else "bottom", int(max(size) / 24 * 1.4))
    result = FocusPipeline(planted, FocusConfig(n_steps=2)).run(
        scene(size, box, seed=9), "What is in the red region?", targets=["red"]
    )
    assert result.targets == ["red"] and result.target_source == "given"
    assert result.rois, "no ROI proposed"
    assert any(covers_centre(r.box, box) for r in result.rois[:3])
    # with a constant (meaningless) yes/no head the anchor order survives ranking
    assert covers_centre(result.selected[0].box, box)


def test_grid_excludes_padding_and_maps_to_image(planted):
    rmap = planted.relevance_map(scene((2400, 900), (0, 0, 140, 140)), "red")
    rows, cols = rmap.grid.shape
    assert cols == 24 and rows < 24  # rows over the padding are dropped
    assert rmap.cell_box(0, 0)[:2] == (0, 0)
    assert rmap.cell_box(rows - 1, cols - 1)[2:] == (2400, 900)


def test_values_read_equal_v_proj_of_input_layernorm(random_dir):
    """The cache's values are v_proj(input_layernorm(h)) of each layer's input."""
    from focus_engine import load_mllm

    mllm = load_mllm(str(random_dir))
    image = scene((800, 600), (100, 100, 200, 200))
    prefill = mllm.prefill(image, "red car")
    text = mllm.build_prompt(1, "Is there a red car in the image? Answer Yes or No.")
    inputs = mllm._to_device(mllm.processor_inputs([mllm.view(image.convert("RGB"))], [text]))
    with torch.inference_mode():
        out = mllm.model(**inputs, output_hidden_states=True)
    layers = mllm._decoder_layers()
    kv_heads = mllm.text_config.num_key_value_heads
    for index, layer in enumerate(layers):
        hidden = out.hidden_states[index][0]
        expected = layer.self_attn.v_proj(layer.input_layernorm(hidden))
        expected = expected.reshape(hidden.shape[0], kv_heads, -1).transpose(0, 1)
        got = prefill.cache.layers[index].values[0]
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_target_tokens_are_found(planted):
    prefill = planted.prefill(scene((600, 400), (10, 10, 60, 60)), "red  square")
    assert prefill.target_tokens == ["red", "square"]
    ids = prefill.input_ids.tolist()
    assert planted.tokenizer.decode([ids[p] for p in prefill.target_positions]) == "red square"


def test_target_that_repeats_a_prompt_word(planted):
    """The target "a" also stands earlier in "Is there a a in the image?"; its own token is used."""
    prefill = planted.prefill(scene((600, 400), (10, 10, 60, 60)), "a")
    ids = prefill.input_ids.tolist()
    a_id = planted.tokenizer.convert_tokens_to_ids("a")
    article = ids.index(a_id)
    assert ids[article + 1] == a_id and prefill.target_positions == [article + 1]


def test_truncated_cache_is_refused():
    from types import SimpleNamespace

    from focus_engine.errors import FocusModelError
    from focus_engine.mllm.base import check_full_cache

    full = SimpleNamespace(values=torch.zeros(1, 2, 100, 8), keys=torch.zeros(1, 2, 100, 8))
    window = SimpleNamespace(values=torch.zeros(1, 2, 64, 8), keys=torch.zeros(1, 2, 64, 8))
    check_full_cache(SimpleNamespace(layers=[full, full]), 100, 2)
    with pytest.raises(FocusModelError, match="sliding-window"):
        check_full_cache(SimpleNamespace(layers=[full, window]), 100, 2)
    with pytest.raises(FocusModelError, match="full per-layer cache"):
        check_full_cache(SimpleNamespace(layers=[full]), 100, 2)


def test_keys_and_random_sources(planted):
    image = scene((1200, 800), (1000, 600, 1100, 700))
    keys = planted.relevance_map(image, "red", source="keys")
    assert keys.source == "keys" and keys.grid.shape == (16, 24)
    rand1 = planted.relevance_map(image, "red", source="random")
    rand2 = planted.relevance_map(image, "red", source="random")
    np.testing.assert_array_equal(rand1.grid, rand2.grid)  # seeded
    other = planted.relevance_map(image, "red", source="random", config=FocusConfig(seed=1))
    assert not np.array_equal(rand1.grid, other.grid)
    with pytest.raises(FocusConfigError):
        planted.relevance_map(image, "red", source="attention")


def test_keys_differ_from_values_on_random_model(random_dir):
    from focus_engine import load_mllm

    mllm = load_mllm(str(random_dir))
    image = scene((900, 700), (50, 50, 150, 150))
    values = mllm.relevance_map(image, "red")
    keys = mllm.relevance_map(image, "red", source="keys")
    assert values.grid.shape == keys.grid.shape
    assert not np.allclose(values.grid, keys.grid)


def test_rollout_and_layer_ranges(planted):
    box = (1900, 300, 2040, 440)
    image = scene((2400, 900), box)
    rollout = planted.relevance_map(image, "red", config=FocusConfig(aggregation="rollout"))
    assert overlaps(rollout.peak_box(), box)
    early = planted.relevance_map(image, "red", layers=(0, 1))
    assert early.layers == (0, 1) and overlaps(early.peak_box(), box)
    assert planted.relevance_map(image, "red").layers == planted.default_layers()
    with pytest.raises(FocusConfigError, match="decoder"):
        planted.relevance_map(image, "red", layers=(2, 40))


def test_stop_words_are_skipped(planted):
    image = scene((1000, 1000), (800, 100, 900, 200))
    rmap = planted.relevance_map(image, "the red square")
    assert rmap.tokens == ("red", "square")
    assert overlaps(rmap.peak_box(), (800, 100, 900, 200))


def test_generic_nouns_are_skipped(planted):
    # "red object" names nothing beyond "red": the same map as "red" alone
    # (the causal prefix up to "red" is identical, so the values are too)
    image = scene((1000, 1000), (800, 100, 900, 200))
    generic = planted.relevance_map(image, "red object")
    assert generic.tokens == ("red",)
    np.testing.assert_allclose(generic.grid, planted.relevance_map(image, "red").grid, atol=1e-6)
    kept = planted.relevance_map(image, "red object", config=FocusConfig(stop_words=("a", "the")))
    assert kept.tokens == ("red", "object")


def test_empty_target_is_refused(planted):
    image = scene((600, 400), (10, 10, 60, 60))
    with pytest.raises(FocusInputError, match="empty"):
        planted.relevance_map(image, "   ")
