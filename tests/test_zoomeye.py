"""The ZoomEye baseline: its tree, its depth weight, its best-first search and
threshold relaxation (driven by a scripted model), its "all X" scan, and runs
on tiny models of the three families with every forward pass counted."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from PIL import Image

from helpers import scene
from focus_engine import FocusConfig
from focus_engine.cost import CallCounter
from focus_engine.methods.zoomeye import (
    Node, ZoomEye, ZoomEyeSettings, build_tree, depth_weight, patch_box, split, tree_depth,
)

SQUARE = (1500, 650, 1600, 750)
"""Where the red square of the scripted scenes is."""


def test_split_follows_the_aspect_ratio_and_gives_the_remainder_to_the_last():
    assert split((0, 0, 100, 100)) == [(0, 0, 50, 50), (50, 0, 50, 50), (0, 50, 50, 50), (50, 50, 50, 50)]
    assert split((0, 0, 100, 250)) == [(0, 0, 100, 62), (0, 62, 100, 62), (0, 124, 100, 62), (0, 186, 100, 64)]
    assert split((10, 0, 301, 100)) == [(10, 0, 75, 100), (85, 0, 75, 100), (160, 0, 75, 100), (235, 0, 76, 100)]


def test_leaves_are_below_the_encoder_side():
    root = build_tree((2000, 1000), 336)
    assert tree_depth(root) == 3  # 2000x1000 -> 4x 500x1000 -> 4x 500x250 -> 4x 125x250
    leaves = []

    def walk(node):
        if not node.children:
            leaves.append(node)
        for child in node.children:
            walk(child)

    walk(root)
    assert len(leaves) == 64 and all(max(n.xywh[2:]) < 336 for n in leaves)
    assert build_tree((300, 200), 336).children == []


def test_the_depth_weight_moves_from_latent_to_existence():
    assert depth_weight(0, 4, 0.2) == pytest.approx(0.2)
    assert depth_weight(2, 4, 0.2) == pytest.approx(0.4)
    assert depth_weight(4, 4, 0.6) == pytest.approx(1.0)


def test_a_view_is_at_least_the_encoder_side_and_shifted_inside():
    settings = ZoomEyeSettings(input_side=336, patch_scale=1.2)
    assert patch_box(Node((0, 0, 100, 100), 2), (2000, 1000), settings) == (0, 0, 403, 403)
    # 1975 - 403 // 2 = 1774 on the left; cut at the image's right and bottom edges
    assert patch_box(Node((1950, 950, 50, 50), 2), (2000, 1000), settings) == (1774, 774, 2000, 1000)


class ScriptedModel:
    """Answers ZoomEye's yes/no questions from the pixels it is shown: the
    more of a view is red the surer "it exists" (none: no); the answering
    question says yes when red fills ``answer_share`` of the view (never when
    that is None)."""

    family = "scripted"

    def __init__(self, answer_share: float | None = 0.02):
        self.counter = CallCounter()
        self.answer_share = answer_share
        self.asked: list[str] = []
        self.device = "cpu"

    def zoomeye_defaults(self):
        return ZoomEyeSettings(input_side=336, view="local", bias=0.2, patch_scale=None)

    def question_scope(self, reuse=True):
        return contextlib.nullcontext()  # nothing prefilled to keep

    def yes_probability(self, prompts, batch_size=8, should_stop=None, keep_prefixes=True):
        out = []
        for images, text in prompts:
            pixels = np.asarray(images[-1], np.int32)
            red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).mean()
            if text.startswith("Question:"):
                self.asked.append("answering")
                out.append(0.95 if self.answer_share is not None and red >= self.answer_share else 0.05)
            else:
                self.asked.append("existence" if text.startswith("Is there") else "latent")
                out.append(0.6 + 0.39 * min(1.0, 10 * red) if red > 0 else 0.1)
        self.counter.forward_passes += len(prompts)
        return np.array(out)

    def generate(self, text, images=(), max_new_tokens=64, should_stop=None):
        self.counter.generate_calls += 1
        self.last_images = list(images)
        return "A"


def red_scene() -> Image.Image:
    return scene((2000, 1000), SQUARE, distractors=0)


def test_the_search_descends_to_the_object_and_stops_when_it_can_answer():
    model = ScriptedModel()
    zoom = ZoomEye(model)
    best, trace = zoom.search(red_scene(), "red square", "What is on the red square?", several=False)
    assert best is not None and best.depth >= 1
    x0, y0, x1, y1 = best.xyxy
    assert x0 <= SQUARE[0] and y0 <= SQUARE[1] and SQUARE[2] <= x1 and SQUARE[3] <= y1
    # every pop asks once; every expansion scores its 4 children twice (existence, latent)
    expanded = sum(1 for node in trace if node.children and node is not best)
    assert model.asked.count("answering") == len(trace)
    assert model.asked.count("existence") == model.asked.count("latent") == 4 * expanded
    assert model.counter.forward_passes == len(model.asked)


def test_the_threshold_relaxes_after_three_pops_per_level_and_gives_up_below_lower():
    model = ScriptedModel(answer_share=None)  # the answering question always says no: c = -0.9
    best, trace = ZoomEye(model).search(red_scene(), "red square", "What is on it?", several=False)
    depth = 3
    # upper 0.6 until 3D pops, then 0.5, 0.4, 0.2, 0.0, -0.2 every second pop; below lower (0) it stops
    assert best is None and len(trace) == 3 * depth + 8


def test_all_x_scans_two_levels_and_keeps_the_surest_views():
    model = ScriptedModel()
    chosen = ZoomEye(model).scan(red_scene(), "red square")
    assert model.asked == ["existence"] * 21  # 1 + 4 + 16 nodes, one question each
    assert chosen and all(n.depth == 2 for n in chosen)  # the deepest views that see red, not their parents
    assert any(n.xyxy[0] <= SQUARE[0] and SQUARE[2] <= n.xyxy[2] for n in chosen)


def test_the_run_answers_on_the_chosen_crop_and_counts_only_search_passes():
    model = ScriptedModel()
    result = ZoomEye(model, FocusConfig()).run(red_scene(), "What is on the red square?", options=["a", "b"],
                                              targets=["red square"])
    assert result.answer == "A" and result.answer_option == "A" and result.chosen
    crop = model.last_images[0]
    assert crop.size != (2000, 1000) and max(crop.size) >= 336
    assert result.cost.forward_passes == model.counter.forward_passes == len(model.asked)


@pytest.mark.parametrize("fixture", ["planted", "onevision", "qwen"])
def test_it_runs_on_every_family_with_each_sequence_counted(request, fixture):
    """Every yes/no question is one sequence through the model (batched or
    not), counted as FOCUS counts; the final answer's generation is not."""
    mllm = request.getfixturevalue(fixture)
    rows = []

    def count(module, args, kwargs):
        if kwargs.get("use_cache") is False:  # yes/no questions; generation runs with the cache
            rows.append(int(kwargs["input_ids"].shape[0]))

    handle = mllm.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        # OneVision's planted crops are 112 px: a small image keeps its tree (and the test) short
        size, box = ((300, 200), (220, 120, 280, 180)) if fixture == "onevision" else ((600, 400), (450, 250, 550, 350))
        result = ZoomEye(mllm, FocusConfig(reuse_prefixes=False)).run(
            scene(size, box), "What is on the red square?", options=["a cat", "a dog"], targets=["red square", "blue"])
    finally:
        handle.remove()
    assert isinstance(result.answer, str) and result.targets == ["red square", "blue"]
    assert result.cost.forward_passes == sum(rows) >= 2
    reused = ZoomEye(mllm).run(scene(size, box), "What is on the red square?", options=["a cat", "a dog"],
                               targets=["red square", "blue"])  # the same search through kept prefixes
    assert reused.answer == result.answer and reused.cost.forward_passes == result.cost.forward_passes
    settings = ZoomEyeSettings.for_model(mllm)
    assert settings.view == ("local" if fixture == "planted" else "global_local")
    assert settings.input_side == {"planted": 336, "onevision": 112, "qwen": 448}[fixture]
