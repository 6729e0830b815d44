"""LLaVA-OneVision: the local-crop grid, checked against the model's own
packing, its working grid, and the interleaved answer (what every family
must do is in test_adapter_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.image_processing_utils import select_best_resolution

from helpers import SIZES, object_box, peak_pixel, scene
from focus_engine import FocusConfig, FocusPipeline, load_mllm


def test_the_base_view_is_counted(onevision):
    assert onevision.base_tokens == 64  # 112-px crops, 14-px patches


@pytest.mark.parametrize("shape", list(SIZES))
@pytest.mark.parametrize("place", ("right", "top-left"))
def test_planted_map_with_model_downscaled_grid(onevision_shrunk, shape, place):
    size = SIZES[shape]
    box = object_box(size, place, side=250)
    view = onevision_shrunk.view(scene(size, box))
    rows, cols = view.extra["local_shape"]
    assert rows * cols <= 1.1**2 * 4 * 64  # shrunk to about anyres_max_4
    x, y = peak_pixel(onevision_shrunk.relevance_map(scene(size, box, seed=2), "red"))
    assert box[0] <= x < box[2] and box[1] <= y < box[3], ((x, y), box)


@pytest.mark.parametrize("size", [(2400, 900), (900, 2400), (700, 650), (200, 120)])
def test_layout_matches_pack_image_features(onevision, size):
    """Feed the model's own pack_image_features with features that encode their
    canvas cell, and read back where each lands in the sequence."""
    mllm = onevision
    image = scene(size, (0, 0, 20, 20), distractors=0)
    view = mllm.view(image)
    inputs = mllm.processor_inputs([view], [mllm.build_prompt(1, "x")])
    side = mllm.patches_per_side
    crops = inputs["pixel_values"].shape[1] - 1  # first is the base view
    canvas_h, canvas_w = select_best_resolution(tuple(inputs["image_sizes"][0].tolist()), mllm.pinpoints)
    crop_rows, crop_cols = canvas_h // mllm.crop_side, canvas_w // mllm.crop_side
    assert crop_rows * crop_cols == crops
    code = torch.full((crops + 1, side * side, 2), -1.0)
    for k in range(crops):
        for i in range(side):
            for j in range(side):
                code[k + 1, i * side + j] = torch.tensor([(k // crop_cols) * side + i, (k % crop_cols) * side + j])
    newline = torch.tensor([-7.0, -7.0])
    packed, _ = mllm.model.model.pack_image_features(
        [code], inputs["image_sizes"], image_newline=newline,
        vision_aspect_ratio=mllm.model.config.vision_aspect_ratio,
    )
    packed = torch.cat(packed) if isinstance(packed, (list, tuple)) else packed
    ids = inputs["input_ids"][0]
    assert packed.shape[0] == int((ids == mllm.image_token_id).sum())
    cells = mllm.visual_grid_positions(ids, view)  # sequence index of each grid cell
    image_positions = (ids == mllm.image_token_id).nonzero().flatten()
    order = {int(p): n for n, p in enumerate(image_positions)}
    rows, cols = cells.shape
    decoded = np.array([[packed[order[int(cells[r, c])]].tolist() for c in range(cols)] for r in range(rows)])
    # row-major stitching: every cell's canvas row/col is a constant offset from its grid row/col
    offsets_r = decoded[:, :, 0] - np.arange(rows)[:, None]
    offsets_c = decoded[:, :, 1] - np.arange(cols)[None, :]
    assert np.all(offsets_r == offsets_r[0, 0]) and np.all(offsets_c == offsets_c[0, 0])
    # the newline token ends every row, and no local cell is a base-view token
    for r in range(rows):
        assert packed[order[int(cells[r, -1]) + 1]].tolist() == [-7.0, -7.0]
    assert (decoded >= 0).all()
    # the unpadded grid spans the whole image, to within a cell
    geometry = view.geometry
    cell_h = (geometry.y_edges[-1] - geometry.y_edges[0]) / rows
    cell_w = (geometry.x_edges[-1] - geometry.x_edges[0]) / cols
    width, height = size
    assert 0 <= geometry.y_edges[0] < cell_h and height - cell_h < geometry.y_edges[-1] <= height
    assert 0 <= geometry.x_edges[0] < cell_w and width - cell_w < geometry.x_edges[-1] <= width
    assert np.all(np.diff(geometry.y_edges) > 0) and np.all(np.diff(geometry.x_edges) > 0)


def test_working_grid_is_blurred_and_bounded(onevision):
    image = scene((2400, 900), (2200, 700, 2350, 850))
    rmap = onevision.with_settings(max_grid_side=12).relevance_map(image, "red")
    assert max(rmap.grid.shape) <= 12
    assert rmap.geometry.x_edges[-1] == 2400 and rmap.geometry.y_edges[-1] == 900
    sharp = onevision.with_settings(map_blur_sigma=0).relevance_map(image, "red")
    blurred = onevision.relevance_map(image, "red")
    assert (blurred.grid > 0.05).sum() > (sharp.grid > 0.05).sum()  # the blur spreads the peak


class RecordingMLLM:
    """Records what the answer stage sends to the model."""

    def __init__(self):
        self.calls = []

    def generate(self, text, images=(), max_new_tokens=64, should_stop=None):
        self.calls.append((text, list(images)))
        return "B"


def test_interleaved_answer_prompt():
    from PIL import Image

    from focus_engine.answer import answer_question
    from focus_engine.rois import ROI

    image = Image.new("RGB", (1000, 800), (100, 100, 100))
    roi = ROI(box=(600, 100, 800, 300), target="umbrella", score=1.0, confidence=0.9)
    fake = RecordingMLLM()
    config = FocusConfig(answer_with_global=True)
    answer = answer_question(fake, image, "Is the red umbrella open?", ["yes", "no"], [roi], config)
    text, images = fake.calls[0]
    assert answer.option == "B" and len(images) == 2
    marked, crop = images
    assert marked.size == (1000, 800) and crop.size == (200, 200)
    # the question says "red", so the rectangle is green, and the text says so
    assert "green rectangle" in text and "main image" in text and "zoomed-in" in text
    assert marked.getpixel((600, 200)) == (0, 200, 0) and marked.getpixel((700, 200)) == (100, 100, 100)
    assert text.index("main image") < text.index("Is the red umbrella open?")
    assert text.splitlines()[-3:-1] == ["A. yes", "B. no"]
    # without an ROI the answer is asked on the whole image alone
    answer_question(fake, image, "Is the red umbrella open?", None, [], config)
    assert len(fake.calls[1][1]) == 1 and fake.calls[1][0] == "Is the red umbrella open?"


def test_onevision_pipeline_answers_with_two_images(onevision):
    calls = []
    original = onevision.generate

    def spy(text, images=(), **kwargs):
        calls.append((text, len(images)))
        return original(text, images=images, **kwargs)

    onevision.generate = spy
    try:
        result = FocusPipeline(onevision, FocusConfig(n_steps=1, overrun=False)).run(
            scene((1200, 900), (1000, 700, 1150, 850)), "What is in the corner?", targets=["red"]
        )
    finally:
        del onevision.generate
    assert calls[-1][1] == 2 and "main image" in calls[-1][0]
    assert isinstance(result.answer, str)


def test_folder_without_processor_config_loads(onevision_dir, tmp_path):
    """Only the model, tokenizer and image processor saved (no processor
    class can be saved without torchvision elsewhere): settings come from the
    model config."""
    import shutil

    for item in onevision_dir.iterdir():
        if item.name != "processor_config.json":
            shutil.copy(item, tmp_path / item.name)
    from transformers import AutoImageProcessor

    mllm0 = load_mllm(str(onevision_dir))
    AutoImageProcessor.from_pretrained(str(onevision_dir)).save_pretrained(tmp_path)
    mllm = load_mllm(str(tmp_path))
    assert mllm.processor.num_image_tokens == mllm0.processor.num_image_tokens
    image = scene((1200, 600), (1000, 50, 1150, 200))
    x, y = peak_pixel(mllm.relevance_map(image, "red"))
    assert 1000 <= x < 1150 and 50 <= y < 200


def test_interleaved_global_image_is_shrunk_for_huge_inputs():
    from PIL import Image

    from focus_engine.answer import GLOBAL_MAX_SIDE, answer_question
    from focus_engine.rois import ROI

    image = Image.new("RGB", (8000, 4000), (100, 100, 100))
    fake = RecordingMLLM()
    roi = ROI(box=(4000, 2000, 4800, 2800), target="cat", score=1.0)
    answer_question(fake, image, "Where is the cat?", None, [roi], FocusConfig(answer_with_global=True))
    marked, crop = fake.calls[0][1]
    assert marked.size == (GLOBAL_MAX_SIDE, GLOBAL_MAX_SIDE // 2) and crop.size == (800, 800)
    assert marked.getpixel((1024, 600)) == (255, 0, 0)  # the left side of the scaled box, in red
    assert marked.getpixel((1100, 600)) == (100, 100, 100)  # inside the box: untouched
