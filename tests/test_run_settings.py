"""One way to set up a run (issue 29): the five layers merged by
``methods.setup.run_config``, the user's value runs or a clear error says
why not, and what is recorded is what ran."""

from __future__ import annotations

import json

import pytest

from focus_engine import FocusConfig
from focus_engine.bench import runner
from focus_engine.bench.datasets import load_dataset
from focus_engine.bench.world import WorldSpec, make_synthetic
from focus_engine.cli import _method_from_args, build_parser, main
from focus_engine.errors import FocusConfigError
from focus_engine.methods.registry import FIXED
from focus_engine.methods.setup import merged_config, run_config, set_fields

TINY = WorldSpec(shapes=("circle", "square", "triangle", "star"), n_options=3, scene_long_side=(480, 560),
                 distractors=(5, 7), question_mix={"label": 1.0})


def cli_method(mllm, *flags):
    args = build_parser().parse_args(["run", "--image", "x.png", "--question", "q", *flags])
    return _method_from_args(args, mllm)


# ----------------------------------------------------------- the precedence table
@pytest.mark.parametrize("flags, verify_stop", [
    (["--preset", "paper", "--verify-stop", "0.7"], 0.7),
    (["--method", "focus-paper", "--verify-stop", "0.7"], 0.7),  # was None, silently
    (["--method", "focus-paper"], None),  # the preset's
    (["--preset", "paper", "--method", "focus-paper"], None),
    (["--method", "focus"], FocusConfig.verify_stop),  # the default's
    ([], FocusConfig.verify_stop),
    (["--verify-stop", "none"], None),
    (["--method", "focus-full"], None),  # the method's
    (["--method", "focus-full", "--verify-stop", "none"], None),  # the same value: no contradiction
])
def test_the_users_value_runs(planted_small, flags, verify_stop):
    assert cli_method(planted_small, *flags).config.verify_stop == verify_stop


@pytest.mark.parametrize("flags, message", [
    (["--method", "focus-full", "--verify-stop", "0.7"],
     "method focus-full fixes verify_stop=None, so verify_stop=0.7 cannot apply; to set verify_stop, use the method "
     "focus"),
    (["--method", "focus-full", "--no-overrun"], "focus-full fixes overrun=True"),
    (["--method", "no-ranking", "--n-steps", "3"], "no-ranking fixes n_steps=1"),
    (["--method", "keys", "--source", "values"], "keys fixes source='keys'"),
    (["--method", "layers:0-2", "--layers", "1", "3"], "fixes layers=(0, 2)"),
    (["--method", "focus-shared", "--map-prompt", "existence"], "focus-shared fixes map_prompt='question'"),
    (["--method", "focus-gated:0.3", "--gate", "0.5"], "fixes gate_threshold=0.3"),
    (["--preset", "default", "--method", "focus-paper"], "focus-paper fixes preset='paper'"),
])
def test_a_contradiction_with_the_method_is_a_clear_error(planted_small, flags, message):
    with pytest.raises(FocusConfigError, match="use the method"):
        cli_method(planted_small, *flags)
    with pytest.raises(FocusConfigError) as caught:
        cli_method(planted_small, *flags)
    assert message in str(caught.value)


def test_the_command_line_says_it_in_one_line_before_any_answer(planted_dir, tmp_path, capsys):
    from helpers import scene

    scene((320, 240), (200, 40, 260, 100)).save(tmp_path / "s.png")
    code = main(["run", "--model", str(planted_dir), "--image", str(tmp_path / "s.png"), "--question", "Q?",
                 "--method", "focus-full", "--verify-stop", "0.7", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "focus: error: method focus-full fixes verify_stop=None" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_only_the_flags_typed_are_settings():
    from focus_engine.cli_flags import user_settings

    def typed(*flags):
        return user_settings(build_parser().parse_args(["run", "--image", "x.png", "--question", "q", *flags]))

    assert typed() == {}
    assert typed("--verify-stop", "none", "--overrun") == {"verify_stop": None, "overrun": True}
    assert typed("--verify-stop", "0.7", "--no-overrun", "--n-steps", "2") == {
        "verify_stop": 0.7, "overrun": False, "n_steps": 2}
    assert typed("--layers", "1", "3", "--max-new-tokens", "8", "--scoring", "likelihood", "--preset", "paper") == {
        "layers": (1, 3), "answer_max_new_tokens": 8, "answer_scoring": "likelihood", "preset": "paper"}


def test_the_layers_apply_in_their_declared_order(planted_small):
    """defaults < family < preset < method < user."""
    family = planted_small.family_defaults()
    default = run_config(planted_small)
    assert default.s_max == family.get("s_max", default.s_max) and default.verify_stop == FocusConfig.verify_stop
    paper = run_config(planted_small, preset="paper", preset_dataset="vstar")
    assert (paper.anchor_spacing, paper.extent_floor, paper.overrun) == (2.0, None, True)  # preset over defaults
    shared = run_config(planted_small, "focus-shared", preset="paper")
    assert shared.map_prompt == "question"  # the method over the preset (which says existence)
    user = run_config(planted_small, preset="paper", preset_dataset="vstar", anchor_spacing=4.0, s_max=7)
    assert (user.anchor_spacing, user.s_max) == (4.0, 7)  # the user over the preset and the family
    assert run_config(planted_small, budget=8).n_steps == 8 and run_config(planted_small, "no-ranking", budget=8).n_steps == 1


def test_a_config_handed_over_counts_only_its_changed_fields():
    assert set_fields(FocusConfig()) == {}
    assert set_fields(FocusConfig(verify_stop=0.7, preset="paper")) == {"verify_stop": 0.7, "preset": "paper"}
    assert merged_config("llava", "focus-full", FocusConfig(n_steps=2)).verify_stop is None
    with pytest.raises(FocusConfigError, match="focus-full fixes verify_stop=None"):
        merged_config("llava", "focus-full", FocusConfig(verify_stop=0.7))
    with pytest.raises(FocusConfigError, match="unknown setting"):
        merged_config("llava", verify_stopp=0.7)


# ------------------------------------------------------------- the bench twin
@pytest.fixture(scope="module")
def one_item(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one_item")
    make_synthetic(folder, seed=12, n=1, spec=TINY)
    return folder


def test_the_bench_twin(planted_small, one_item, tmp_path):
    items = load_dataset(one_item)
    result = runner.run_benchmark(planted_small, items, "focus-paper", None, [2], progress=False, out_dir=tmp_path,
                                  use_gt_targets=True, settings={"verify_stop": 0.7, "answer_max_new_tokens": 2})
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["config"]["verify_stop"] == 0.7 and run["config"]["preset"] == "paper" and run["config"]["overrun"]
    assert result.runs[0].config == run["config"]
    with pytest.raises(FocusConfigError, match="focus-full fixes verify_stop=None"):
        runner.run_benchmark(planted_small, items, "focus,focus-full", None, progress=False,
                             settings={"verify_stop": 0.7})


def test_bench_run_records_the_papers_settings(planted_dir, one_item, tmp_path, capsys):
    """``focus bench run --methods focus-paper`` used to record the default's
    settings (the config was recorded before the method applied the preset)."""
    out = tmp_path / "out"
    assert main(["bench", "run", "--data", str(one_item), "--model", str(planted_dir), "--methods",
                 "focus,focus-paper", "--max-new-tokens", "2", "--limit", "1", "--out", str(out)]) == 0
    runs = {r["label"]: r["config"] for r in json.loads((out / "results.json").read_text())["runs"]}
    paper, default = runs["focus-paper@4"], runs["focus@4"]
    assert (paper["preset"], paper["preset_dataset"], paper["verify_stop"], paper["overrun"], paper["extent_floor"]) \
        == ("paper", "vstar", None, True, None)
    assert (default["preset"], default["verify_stop"], default["overrun"]) == ("default", 0.5, False)
    err = capsys.readouterr().err
    assert "preset: paper, for llava on vstar" in err and "(focus-paper@4)" in err


# --------------------------------------------------------- recorded == used
METHODS = sorted(FIXED) + ["focus-gated:0.3", "layers:0-2"]


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_what_is_recorded_is_what_ran(planted_small, one_item, tmp_path, monkeypatch, preset):
    """Every registered method x both presets x a user override: the config
    each run records in results.json is the one its method ran with."""
    used = {}
    real_answer_item = runner.answer_item

    def spy(mllm, item, image, method, **options):
        real_run = method.run

        def run(*args, **kwargs):
            result = real_run(*args, **kwargs)
            used[method.name] = result.config  # one budget: one run per method
            return result

        method.run = run
        return real_answer_item(mllm, item, image, method, **options)

    monkeypatch.setattr(runner, "answer_item", spy)
    settings = {"answer_max_new_tokens": 2, "nms_iou": 0.25, "max_overrun": 1}
    if preset == "paper":  # typed; the default preset is what nobody typed (focus-paper refuses a typed "default")
        settings["preset"] = preset
    runner.run_benchmark(planted_small, load_dataset(one_item), METHODS, None, [1], progress=False,
                         out_dir=tmp_path, use_gt_targets=True, settings=settings)
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert len(runs) == len(METHODS) == len(used)
    for run in runs:
        ran = json.loads(json.dumps(used[run["method"]]))
        assert run["config"] == ran, run["label"]
        assert (ran["nms_iou"], ran["answer_max_new_tokens"]) == (0.25, 2)  # the user's override ran
        assert ran["preset"] == ("paper" if run["method"] == "focus-paper" else preset)


def test_focus_run_writes_the_config_it_ran_with(planted_dir, tmp_path):
    from helpers import scene

    scene((320, 240), (200, 40, 260, 100)).save(tmp_path / "s.png")
    assert main(["run", "--model", str(planted_dir), "--image", str(tmp_path / "s.png"), "--question", "Q?",
                 "--targets", "red", "--method", "focus-paper", "--verify-stop", "0.7", "--max-new-tokens", "2",
                 "--out", str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "result.json").read_text())["config"]
    assert (config["preset"], config["verify_stop"], config["overrun"], config["extent_floor"]) == (
        "paper", 0.7, True, None)
