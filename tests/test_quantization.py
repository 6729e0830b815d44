"""4-bit and 8-bit loading through bitsandbytes, on the CPU: FOCUS reads the
value vectors from the KV cache, so quantized weights still localise."""

from __future__ import annotations

import pytest

from helpers import SIZES, covers_centre, object_box, peak_pixel, scene
from focus_engine import load_mllm
from focus_engine.errors import FocusModelError


@pytest.fixture(scope="module", params=["4bit", "8bit"])
def quantized(request, planted_dir):
    return request.param, load_mllm(str(planted_dir), device="cpu", quantization=request.param)


def linear_types(mllm) -> set[str]:
    return {type(m).__name__ for m in mllm.model.model.language_model.modules() if "Linear" in type(m).__name__}


def test_the_weights_are_quantized(quantized, planted):
    kind, mllm = quantized
    assert linear_types(mllm) == {"Linear4bit" if kind == "4bit" else "Linear8bitLt"}
    assert linear_types(planted) == {"Linear"}
    full = sum(p.numel() * p.element_size() for p in planted.model.parameters())
    assert sum(p.numel() * p.element_size() for p in mllm.model.parameters()) < 0.8 * full


@pytest.mark.parametrize("place", ("top-left", "right", "bottom"))
def test_the_map_still_peaks_on_the_object(quantized, place):
    _, mllm = quantized
    size = SIZES["wide"]
    box = object_box(size, place, 220)
    rmap = mllm.relevance_map(scene(size, box, colour="green", seed=7), "green")
    x, y = peak_pixel(rmap)
    assert box[0] - 60 <= x < box[2] + 60 and box[1] - 60 <= y < box[3] + 60


def test_focus_runs_end_to_end_quantized(quantized):
    from focus_engine import FocusPipeline

    kind, mllm = quantized
    box = (1500, 300, 1720, 520)
    result = FocusPipeline(mllm).run(scene(SIZES["wide"], box, colour="blue", seed=2), "What is the blue object?",
                                     targets="blue object")
    assert result.selected and covers_centre(result.selected[0].box, box)


def test_a_quantized_model_answers_alike_through_kept_prefixes(quantized):
    """Each image prefilled once (prefixes.py) on 4-/8-bit weights: the same
    answer, boxes and confidences as every prompt prefilled whole."""
    import numpy as np

    from focus_engine import FocusConfig, FocusPipeline

    _, mllm = quantized
    image = scene(SIZES["wide"], (1500, 300, 1720, 520), colour="blue", seed=2)
    on, off = (FocusPipeline(mllm, FocusConfig(reuse_prefixes=reuse)).run(
        image, "What colour is the square? (A) blue (B) red", targets=["blue", "red"]) for reuse in (True, False))
    assert on.answer == off.answer and [r.box for r in on.rois] == [r.box for r in off.rois]
    np.testing.assert_allclose([r.confidence or -1 for r in on.rois], [r.confidence or -1 for r in off.rois],
                               atol=1e-3)


def test_unknown_quantization_is_refused(planted_dir):
    with pytest.raises(FocusModelError, match="quantization '3bit' is not one of none, 8bit, 4bit"):
        load_mllm(str(planted_dir), device="cpu", quantization="3bit")
