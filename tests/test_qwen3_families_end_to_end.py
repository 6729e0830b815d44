"""The newer families (Qwen3-VL, Qwen3.5) end to end: the stage nodes
chained as a workflow runs them, every benchmark method in both scoring
modes, and 4-/8-bit loading. Skipped where the installed transformers is
older than a family needs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from families import FAMILIES, FAMILY
from helpers import BOXES, covers_centre, image_batch, object_box, peak_pixel, scene
from focus_engine import FocusPipeline, load_mllm

NEW_FAMILIES = [
    pytest.param(f.name, marks=pytest.mark.skipif(bool(f.skip_reason), reason=f.skip_reason or ""))
    for f in FAMILIES if f.newer_than_the_floor
]


@pytest.fixture(params=NEW_FAMILIES)
def family(request):
    return request.param


def test_a_workflow_of_the_stage_nodes_runs(pack, request, family):
    """Extract targets -> relevance map -> propose -> rank -> answer, as a
    saved workflow runs them, on the model the Load MLLM node would hand over."""
    from test_nodes_stages import run_chain

    mllm = pack.focus_engine.load_mllm(str(request.getfixturevalue(f"{FAMILY[family].planted}_dir")))
    images = image_batch(1)
    out = run_chain(pack.nodes.stages, mllm, images)
    assert out["heatmap"].shape == (1, 700, 1200) and out["answer"].strip()
    for i in range(1):
        x0, y0, x1, y1 = BOXES[i]
        heat = out["heatmap"][i].numpy()
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        assert x0 <= x < x1 and y0 <= y < y1
        assert float(out["selected_mask"][i, (y0 + y1) // 2, (x0 + x1) // 2]) == 1.0


@pytest.mark.slow
def test_every_bench_method_in_both_scoring_modes(request, family, tmp_path):
    from test_bench_runner import FAST, TINY

    from focus_engine.bench.datasets import load_dataset
    from focus_engine.bench.runner import run_benchmark
    from focus_engine.bench.world import make_synthetic

    mllm = request.getfixturevalue(FAMILY[family].planted)
    make_synthetic(tmp_path / "world", seed=3, n=1, spec=TINY)
    items = load_dataset(tmp_path / "world")
    methods = ["vanilla", "focus", "random", "no-ranking", "keys", "layers:1-3", "focus-shared", "focus-gated:0.5",
               "zoomeye"]
    for scoring in ("generate", "likelihood"):
        config = dataclasses.replace(FAST, answer_scoring=scoring)
        chosen = methods if scoring == "generate" else [m for m in methods if not m.startswith("focus-gated")]
        result = run_benchmark(mllm, items, ",".join(chosen), config, n_steps_list=[2], out_dir=tmp_path / scoring,
                               use_gt_targets=True)  # (the gate judges a generated answer: not with likelihood)
        records = [record for run in result.runs for record in run.records]
        assert len(result.runs) == len(chosen) and len(records) == len(chosen) * len(items)
        failed = [record for record in records if record.get("error")]
        assert not failed, failed[:1]


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_loading_still_localises(request, family, quantization):
    mllm = load_mllm(str(request.getfixturevalue(f"{FAMILY[family].planted}_dir")), device="cpu",
                     quantization=quantization)
    kinds = {type(m).__name__ for m in mllm.model.model.language_model.modules() if "Linear" in type(m).__name__}
    assert kinds == {"Linear4bit" if quantization == "4bit" else "Linear8bitLt"}
    size = (1600, 900)
    box = object_box(size, "right", 220)
    x, y = peak_pixel(mllm.relevance_map(scene(size, box, colour="green", seed=7), "green"))
    assert box[0] - 60 <= x < box[2] + 60 and box[1] - 60 <= y < box[3] + 60
    target = (200, 150, 420, 370)
    result = FocusPipeline(mllm).run(scene(size, target, colour="blue", seed=2), "What is it?", targets=["blue"])
    assert result.selected and covers_centre(result.selected[0].box, target)
