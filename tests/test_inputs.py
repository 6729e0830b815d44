"""Bad and unusual inputs: clear FocusErrors, or correct conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from families import FAMILIES
from helpers import scene
from focus_engine import FocusConfig, FocusInputError, FocusPipeline
from focus_engine.cost import PeakMemory, current_rss_bytes
from focus_engine.errors import FocusConfigError
from focus_engine.images import to_pil_rgb


def test_empty_question(planted):
    with pytest.raises(FocusInputError, match="question is empty"):
        FocusPipeline(planted).run(scene((400, 300), (10, 10, 60, 60)), "   ")


def test_no_image(planted):
    with pytest.raises(FocusInputError, match="no image"):
        FocusPipeline(planted).run(None, "What is red?")
    with pytest.raises(FocusInputError, match="no image"):
        planted.relevance_map(None, "red")


def test_one_pixel_image(planted):
    with pytest.raises(FocusInputError, match="1x1"):
        planted.relevance_map(Image.new("RGB", (1, 1)), "red")


def test_small_image_runs_end_to_end(planted):
    """A 40x24 image: cells of under 2 px, crops of a few pixels still verify and answer."""
    image = scene((40, 24), (30, 2, 38, 10), distractors=0)
    result = FocusPipeline(planted, FocusConfig(n_steps=2, verify_stop=None)).run(image, "Where is the red square?",
                                                                                  targets=["red"])
    assert result.rois and all(r.confidence is not None for r in result.rois[:2])
    x0, y0, x1, y1 = result.selected[0].box
    assert x0 <= 34 < x1 and y0 <= 6 < y1


def test_wrong_types_and_shapes():
    with pytest.raises(FocusInputError, match="str"):
        to_pil_rgb("image.png")
    with pytest.raises(FocusInputError, match="shape"):
        to_pil_rgb(np.zeros((32, 32, 5), np.uint8))
    with pytest.raises(FocusInputError, match="batch of 3"):
        to_pil_rgb(torch.zeros(3, 32, 32, 3))
    with pytest.raises(FocusInputError, match="NaN"):
        to_pil_rgb(np.full((32, 32, 3), np.nan, np.float32))


def test_modes_are_converted(planted):
    base = scene((640, 480), (500, 50, 600, 150))
    rgba = base.convert("RGBA")
    rgba.putalpha(255)
    grey_l = base.convert("L")
    i16 = Image.fromarray(np.asarray(grey_l, np.uint16) * 257)
    assert i16.mode == "I;16"
    assert to_pil_rgb(rgba).mode == "RGB"
    # a 16-bit image is scaled, not clipped to white
    converted = np.asarray(to_pil_rgb(i16))
    np.testing.assert_allclose(converted[..., 0], np.asarray(grey_l), atol=1)
    red_map = planted.relevance_map(rgba, "red")
    assert red_map.peak_box()[0] >= 400  # RGBA keeps its colours: the red square still wins
    for image in (grey_l, i16):
        rmap = planted.relevance_map(image, "red")
        assert rmap.grid.shape == (18, 24) and np.isfinite(rmap.grid).all()


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    assert to_pil_rgb(rgba).getpixel((5, 5)) == (255, 255, 255)


def test_comfy_style_tensor_and_float_arrays(planted):
    image = scene((640, 480), (500, 50, 600, 150))
    as_float = np.asarray(image, np.float32) / 255.0
    tensor = torch.from_numpy(as_float)[None]  # [1, H, W, C] like a ComfyUI IMAGE item
    maps = [planted.relevance_map(x, "red").grid for x in (image, as_float, tensor)]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    np.testing.assert_allclose(maps[0], maps[2], atol=1e-5)


def test_huge_image_has_bounded_memory(planted):
    """10000x10000: never padded or converted to float at full size."""
    array = np.full((10000, 10000, 3), 118, np.uint8)
    array[9000:9400, 9000:9400] = (220, 30, 30)
    before = current_rss_bytes()
    with PeakMemory("cpu", interval=0.002) as memory:
        result = FocusPipeline(planted, FocusConfig(n_steps=2)).run(array, "Where is the red square?", targets=["red"])
    extra = memory.peak - before
    assert extra < 1.0 * 2**30, f"peak grew by {extra / 2**20:.0f} MiB"
    x0, y0, x1, y1 = result.selected[0].box
    assert x0 <= 9200 < x1 and y0 <= 9200 < y1


def test_bad_config_values():
    with pytest.raises(FocusConfigError, match="n_steps"):
        FocusConfig(n_steps=0)
    with pytest.raises(FocusConfigError, match="layers"):
        FocusConfig(layers=(5, 2))
    with pytest.raises(FocusConfigError, match="s_max"):
        FocusConfig(s_min=4, s_max=2)


def test_options_are_checked(planted):
    image = scene((400, 300), (10, 10, 60, 60))
    with pytest.raises(FocusInputError, match="between 2 and 26"):
        FocusPipeline(planted).run(image, "Which?", options=["only one"])
    with pytest.raises(FocusInputError, match="list of strings"):
        FocusPipeline(planted).run(image, "Which?", options="A B")


@pytest.mark.parametrize("family", [f.planted for f in FAMILIES if f.name != "llava"])
def test_huge_image_bounded_memory_other_families(family, request):
    """OneVision and Qwen2.5-VL shrink a 10000x10000 image before their processors see it."""
    mllm = request.getfixturevalue(family)
    array = np.full((10000, 10000, 3), 118, np.uint8)
    array[9000:9500, 9000:9500] = (220, 30, 30)
    before = current_rss_bytes()
    with PeakMemory("cpu", interval=0.002) as memory:
        rmap = mllm.relevance_map(array, "red")
    assert memory.peak - before < 1.0 * 2**30, f"peak grew by {(memory.peak - before) / 2**20:.0f} MiB"
    x0, y0, x1, y1 = rmap.peak_box()
    assert x1 > 9000 and y1 > 9000
