"""Relevance maps from value vectors on LLaVA-1.5 geometry: another grid
size, the padding rows, the target's tokens, layer ranges, stop words and the
ablation sources (what every family must do is in test_adapter_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import SIZES, scene
from focus_engine import FocusConfig
from focus_engine.errors import FocusConfigError, FocusInputError


def overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


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


def test_grid_excludes_padding_and_maps_to_image(planted):
    rmap = planted.relevance_map(scene((2400, 900), (0, 0, 140, 140)), "red")
    rows, cols = rmap.grid.shape
    assert cols == 24 and rows < 24  # rows over the padding are dropped
    assert rmap.cell_box(0, 0)[:2] == (0, 0)
    assert rmap.cell_box(rows - 1, cols - 1)[2:] == (2400, 900)


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
    from focus_engine.kv import check_full_cache

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
