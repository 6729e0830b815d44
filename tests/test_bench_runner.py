"""The benchmark runner on a tiny planted LLaVA, answer parsing, methods, and
the ``focus bench`` commands."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from focus_engine.bench.datasets import BenchItem, ImageRef, load_dataset
from focus_engine.bench.plot import PLOT_STEM
from focus_engine.bench.runner import RESULTS_FILE, format_summary, run_benchmark
from focus_engine.bench.world import WorldSpec, make_synthetic
from focus_engine.cli import main
from focus_engine.config import FocusConfig
from focus_engine.errors import FocusConfigError

TINY = WorldSpec(
    shapes=("circle", "square", "triangle", "star"), n_options=3, scene_long_side=(480, 560), distractors=(5, 7),
    question_mix={"label": 1.0, "spatial": 1.0},
)
"""Small scenes in the words the planted test tokenizer knows (it has no
"cross" or "diamond": FOCUS could not find such a target's tokens)."""
FAST = FocusConfig(answer_max_new_tokens=2, max_overrun=1, extent_floor=None)
"""Two answer tokens and one overrun step keep the CPU time small; the paper's
boxes (no extent) leave every target of these small scenes enough ROIs for
the pass counts below, and focus-full's verification (the paper's: n_steps
at once, then overrun) makes those counts exact."""


@pytest.fixture(scope="module")
def tiny_items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_world")
    make_synthetic(folder, seed=3, n=2, spec=TINY)
    return load_dataset(folder)


@pytest.fixture(scope="module")
def bench_run(planted_small, tiny_items, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_out")
    calls = []
    result = run_benchmark(
        planted_small, tiny_items, "vanilla,focus-full,no-ranking", FAST, n_steps_list=[2, 1],
        progress=lambda done, total, message: calls.append((done, total)), out_dir=out, use_gt_targets=True,
    )
    return result, out, calls


def test_runs_and_records(bench_run, tiny_items):
    result, _, calls = bench_run
    assert sorted(i.subtype for i in tiny_items) == ["label", "spatial"]  # one and two targets
    assert [r.label for r in result.runs] == ["vanilla", "focus-full@1", "focus-full@2", "no-ranking"]
    assert calls[-1] == (8, 8) and len(calls) == 9  # one tick per (item, run) and a final one
    for run in result.runs:
        assert [r["id"] for r in run.records] == [i.id for i in tiny_items]
        assert run.metrics["n"] == 2 and 0.0 <= run.metrics["accuracy"] <= 1.0
        for record, item in zip(run.records, tiny_items):
            assert "error" not in record, record["error"]
            assert record["correct"] == (record["chosen_index"] == item.correct_index)
            assert record["generate_calls"] == 1  # targets given: only the final answer generates
            assert record["seconds"] > 0


def test_forward_pass_accounting(bench_run):
    result, _, _ = bench_run
    for record in result.run("vanilla").records:
        assert record["forward_passes"] == 0 and record["ranked_boxes"] is None
    for record in result.run("no-ranking").records:
        assert record["verified"] == 0 and record["forward_passes"] == len(record["targets"])
    for n in (1, 2):
        for record in result.run("focus-full", n).records:
            targets = len(record["targets"])
            # one relevance prefill per target + one pass per verified crop
            assert record["forward_passes"] == targets + record["verified"]
            assert n * targets <= record["verified"] <= (n + FAST.max_overrun) * targets
            assert record["targets"] == record["gt_names"]
            assert len(record["peak_hits"]) == len(record["gt_boxes"])
            assert 1 <= len(record["selected_boxes"]) <= len(record["ranked_boxes"])
    focus1, focus2 = result.run("focus-full", 1).metrics, result.run("focus-full", 2).metrics
    assert focus2["forward_passes"] >= focus1["forward_passes"] > result.run("no-ranking").metrics["forward_passes"]


def test_records_score_the_masks_of_the_regions_against_the_true_masks(bench_run):
    """World items carry their objects: each searched question's record scores
    both mask shapes of its selected regions (metrics.mask_match); the
    relevance mask lies inside the box mask, so it never covers more."""
    result, _, _ = bench_run
    assert all("mask_scores" not in r for r in result.run("vanilla").records)
    assert result.run("vanilla").metrics["mask"] == {}
    for run in (result.run("focus-full", 2), result.run("no-ranking")):
        for record in run.records:
            scores = record["mask_scores"]
            assert set(scores) == {"box", "relevance"}
            assert all(0.0 <= v <= 1.0 for shape in scores.values() for v in shape.values())
            assert scores["relevance"]["cover"] <= scores["box"]["cover"]
        assert set(run.metrics["mask"]) == {"box", "relevance"} and run.metrics["mask"]["box"]["n"] == 2
    covered = [r["mask_scores"]["box"]["cover"] for r in result.run("focus-full", 2).records]
    assert max(covered) > 0  # the planted model's boxes land on the objects
    table = format_summary(result).splitlines()  # the mask mIoU columns, before peak and gated
    assert table[0].split()[-4:-2] == ["box", "relev."]
    assert next(r for r in table if r.startswith("vanilla ")).split()[-4:-2] == ["-", "-"]
    mask = result.run("focus-full", 2).metrics["mask"]
    assert next(r for r in table if r.startswith("focus-full@2 ")).split()[-4:-2] == [
        f"{100 * mask['box']['miou']:.1f}", f"{100 * mask['relevance']['miou']:.1f}"]


def test_results_json_and_plot_are_written(bench_run):
    result, out, _ = bench_run
    data = json.loads((out / RESULTS_FILE).read_text())
    assert [r["label"] for r in data["summary"]] == [r.label for r in result.runs]
    assert data["n_items"] == 2 and data["settings"]["use_gt_targets"] is True
    assert data["runs"][1]["config"]["n_steps"] == 1 and data["runs"][3]["config"]["overrun"] is False
    plot = Image.open(out / f"{PLOT_STEM}.png")
    assert len(plot.convert("RGB").getcolors(1 << 16) or []) > 10  # axes, text, coloured series
    assert (out / f"{PLOT_STEM}.svg").is_file()


def test_unreadable_image_is_an_error_record(planted_small, tmp_path):
    item = BenchItem(id="gone", dataset="x", question="Q?", options=["a", "b"], correct_index=0, category="c",
                     image=ImageRef(path=tmp_path / "gone.jpg"))
    result = run_benchmark(planted_small, [item], ["vanilla"], FAST, progress=False)
    record = result.runs[0].records[0]
    assert "does not exist" in record["error"] and record["correct"] is False
    assert result.runs[0].metrics["errors"] == 1


def test_layer_range_beyond_the_model_fails_before_running(planted_small, tiny_items):
    with pytest.raises(FocusConfigError, match="decoder"):
        run_benchmark(planted_small, tiny_items, ["layers:0-99"], FAST, progress=False)


def test_cli_world_spec_and_make_synthetic(tmp_path, capsys):
    spec_path = tmp_path / "spec.json"
    assert main(["bench", "world-spec", "--out", str(spec_path)]) == 0
    assert WorldSpec.from_json(spec_path.read_text()) == WorldSpec()
    assert main(["bench", "world-spec"]) == 0
    assert json.loads(capsys.readouterr().out.split("wrote", 1)[-1].split("\n", 1)[1])["labels"][0] == "A"
    spec_path.write_text(TINY.to_json())
    out = tmp_path / "set"
    assert main(["bench", "make-synthetic", "--seed", "5", "--n", "3", "--out", str(out), "--spec", str(spec_path)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n"] == 3 and manifest["seed"] == 5 and manifest["spec_hash"] == TINY.hash()
    assert len(load_dataset(out)) == 3
    assert main(["bench", "make-synthetic", "--seed", "5", "--n", "1", "--out", str(out), "--spec",
                 str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_bench_run_with_the_demo_model(tmp_path, capsys):
    data = tmp_path / "set"
    make_synthetic(data, seed=9, n=1, spec=TINY)
    out = tmp_path / "out"
    code = main(["bench", "run", "--data", str(data), "--methods",
                 "vanilla,no-ranking", "--n-steps", "1", "--gt-targets", "--max-new-tokens", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "synthetic world" in printed and "no-ranking" in printed and "vanilla" in printed
    assert (out / RESULTS_FILE).is_file() and (out / f"{PLOT_STEM}.png").is_file()
    assert f"wrote    : {out / f'{PLOT_STEM}.png'}" in printed and f"{PLOT_STEM}.svg" in printed  # issue 33, item 10
    assert main(["bench", "run", "--data", str(data), "--methods", "bogus"]) == 2
