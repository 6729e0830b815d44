"""The `focus` command: run on a model folder and an image file, and demo."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from helpers import scene, set_hub_offline
from focus_engine.cli import main


def test_focus_run_writes_outputs(planted_dir, tmp_path, capsys):
    image_path = tmp_path / "scene.png"
    scene((1600, 900), (1450, 700, 1560, 810)).save(image_path)
    out = tmp_path / "out"
    code = main([
        "run", "--model", str(planted_dir), "--image", str(image_path), "--question", "Where is the red square?",
        "--options", "left", "right", "--targets", "red", "--n-steps", "2", "--out", str(out), "--mask-shape", "box",
    ])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["targets"] == ["red"] and result["options"] == ["left", "right"]
    assert result["cost"]["forward_passes"] >= 1
    x0, y0, x1, y1 = result["selected"][0]["box"]
    assert x0 <= 1505 < x1 and y0 <= 755 < y1
    mask = Image.open(out / "roi_mask.png")
    assert mask.size == (1600, 900) and mask.getpixel((1505, 755)) == 255 and mask.getpixel((5, 5)) == 0
    assert Image.open(out / "heatmap_red.png").size == (1600, 900)
    assert Image.open(out / "rois.png").size == (1600, 900)
    captured = capsys.readouterr()
    assert "answer" in captured.out and "[focus]" in captured.err  # progress goes to stderr


def test_focus_run_reports_the_gate(planted_dir, tmp_path, capsys):
    image_path = tmp_path / "scene.png"
    scene((1600, 900), (1450, 700, 1560, 810)).save(image_path)
    code = main(["run", "--model", str(planted_dir), "--image", str(image_path), "--question", "Where is the red square?",
                 "--targets", "red", "--gate", "0.001", "--out", str(tmp_path / "out")])
    assert code == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["gate"]["decision"] == "answered" and result["cost"]["forward_passes"] == 0
    assert "the plain answer stands" in capsys.readouterr().out


def test_focus_run_with_the_finder_says_it_gives_no_answer(planted_dir, tmp_path, capsys):
    image_path = tmp_path / "scene.png"
    scene((1600, 900), (1450, 700, 1560, 810)).save(image_path)
    code = main(["run", "--model", str(planted_dir), "--image", str(image_path), "--question", "Where is the red square?",
                 "--targets", "red", "--method", "focus-find", "--options", "left", "right", "--out", str(tmp_path / "out"),
                 "--mask-shape", "box"])
    printed = capsys.readouterr().out
    assert code == 0 and "answer   : none asked (focus-find gives the regions only)" in printed
    assert "option   :" not in printed and "ROI      : red" in printed
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["method"] == "focus-find" and result["selected"] and result["answer"] == ""
    # --mask-shape relevance: roi_mask.png only where the map is high, inside the same boxes
    assert main(["run", "--model", str(planted_dir), "--image", str(image_path), "--question", "Where is the red "
                 "square?", "--targets", "red", "--method", "focus-find", "--mask-shape", "relevance", "--out",
                 str(tmp_path / "tight")]) == 0
    box = np.asarray(Image.open(tmp_path / "out" / "roi_mask.png")) > 0
    relevance = np.asarray(Image.open(tmp_path / "tight" / "roi_mask.png")) > 0
    assert 0 < relevance.sum() < box.sum() and not (relevance & ~box).any()


def test_focus_run_errors_are_one_line(planted_dir, tmp_path, capsys):
    code = main(["run", "--model", str(planted_dir), "--image", str(tmp_path / "missing.png"), "--question", "Q?"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    image_path = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image_path)
    code = main(["run", "--model", str(tmp_path / "nope"), "--image", str(image_path), "--question", "Q?"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_focus_demo(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo")])
    assert code == 0
    out = capsys.readouterr().out
    assert "knows only this package's synthetic world" in out  # says plainly what the demo model is
    lines = dict(line.split(":", 1) for line in out.splitlines() if line[:9].strip() in ("truth", "vanilla", "FOCUS",
                                                                                            "located"))
    assert set(lines) >= {"truth    ", "vanilla  ", "FOCUS    ", "located  "}
    assert lines["FOCUS    "].strip() == "right" and "covers" in lines["located  "] and "NOT" not in lines["located  "]
    result = json.loads((tmp_path / "demo" / "result.json").read_text())
    assert result["relevance"] and result["selected"]
    figure = Image.open(tmp_path / "demo" / "comparison.png")
    assert figure.width > 2 * figure.height  # three panels side by side
    assert (tmp_path / "demo" / "rois.png").exists()


def test_focus_demo_with_another_model(planted_dir, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--model", str(planted_dir)]) == 0
    out = capsys.readouterr().out
    assert "synthetic world" not in out and "truth" in out  # no claim about a model it did not ship
    assert main(["demo", "--out", str(tmp_path / "demo2"), "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_what_the_user_typed_is_judged_before_any_model_loads(tmp_path, capsys):
    """Issue 33, items 1, 4 and 10: an --out that is a file, an empty
    question, a setting out of range or a gate above 1 stop at once in the
    words of the flag typed (the model path does not even exist)."""
    image_path = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image_path)
    (tmp_path / "taken").write_text("a file")
    base = ["run", "--model", str(tmp_path / "no_model_here"), "--image", str(image_path)]
    for flags, first_line in (
        (["--question", "Q?", "--out", str(tmp_path / "taken")], f"focus: error: --out '{tmp_path / 'taken'}' is a file"),
        (["--question", " "], "focus: error: the question is empty"),
        (["--question", "Q?", "--n-steps", "0"], "focus: error: --n-steps 0: must be at least 1"),
        (["--question", "Q?", "--verify-stop", "1.5"], "focus: error: --verify-stop 1.5: must be in (0, 1]"),
        (["--question", "Q?", "--gate", "2"], "focus: error: --gate 2: the threshold must be between 0 and 1"),
        (["--question", "Q?", "--method", "no-ranking", "--n-steps", "3"], "focus: error: method no-ranking fixes"),
        (["--question", "Q?", "--method", "focus-gated:0.3", "--gate", "0.5"],
         "focus: error: method focus-gated:0.3 fixes gate_threshold=0.3"),
    ):
        assert main(base + flags) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith(first_line), (flags, err)
        assert "does not exist" not in err and "FocusConfig" not in err and "Traceback" not in err
    assert main(["demo", "--out", str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_version_and_help(capsys):
    import pytest

    from focus_engine import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"focus {__version__}"
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "the question about the image" in text and "where the model runs" in text


def test_the_model_flags_apply_to_the_embedded_model(tmp_path, capsys):
    """Issue 33, item 5: without --model, --precision and --attention load the
    embedded demo model as they would any model (they were ignored)."""
    import torch

    from focus_engine.cli import build_parser
    from focus_engine.cli_flags import load_model

    args = build_parser().parse_args(["run", "--image", "x.png", "--question", "Q?", "--device", "cpu",
                                      "--precision", "bf16", "--attention", "eager"])
    mllm = load_model(args, say=lambda message: None)
    assert mllm.dtype == torch.bfloat16 and mllm.device.type == "cpu"
    assert mllm.model.config._attn_implementation == "eager"
    default = load_model(build_parser().parse_args(["run", "--image", "x.png", "--question", "Q?"]),
                         say=lambda message: None)
    assert default.dtype == torch.float32  # auto on the CPU: the precision it was measured in


def test_an_unreachable_hub_and_an_incomplete_folder_are_said_at_once(tmp_path, capsys, monkeypatch):
    """Issue 33, items 2 and 3: a hub id with no hub in reach stops before
    any retry, in one line saying what to download and where, the reason
    one line below; a folder with only config.json names what it lacks."""
    image_path = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image_path)
    import huggingface_hub.constants

    set_hub_offline(monkeypatch, False)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # a closed port
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty cache
    base = ["run", "--image", str(image_path), "--question", "Q?", "--out", str(tmp_path / "out")]
    assert main(base + ["--model", "nobody/no-such-model"]) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("[focus] ")]
    assert lines[0].startswith("focus: error: 'nobody/no-such-model' is not a model folder here nor in the Hugging "
                               "Face cache, and the hub cannot be reached") and "huggingface-cli download" in lines[0]
    assert lines[1].startswith("  reason: no connection to 127.0.0.1:9") and len(lines) == 2  # no retries printed
    folder = tmp_path / "only_config"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llava"}')
    assert main(base + ["--model", str(folder)]) == 2
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not line.startswith("[focus] "))
    assert err.startswith(f"focus: error: model folder '{folder}' has a config.json but lacks the weights")
    assert "the tokenizer" in err and "the image processor's settings" in err and len(err.splitlines()) == 1


def test_run_outputs_are_this_runs_and_say_each_thing_once(planted_dir, tmp_path, capsys):
    """Issue 33, item 7: a reused --out keeps no picture of an earlier run;
    the answer is printed once, with the option it chose (or that it chose
    none); the demo model's note is one short line."""
    from focus_engine.demo import DEMO_DISCLAIMER

    image_path = tmp_path / "scene.png"
    scene((1200, 800), (1000, 600, 1100, 700)).save(image_path)
    out = tmp_path / "out"
    base = ["run", "--model", str(planted_dir), "--image", str(image_path), "--question", "What colour?",
            "--n-steps", "1", "--out", str(out)]
    assert main(base + ["--targets", "red"]) == 0
    assert (out / "heatmap_red.png").is_file()
    capsys.readouterr()
    assert main(base + ["--targets", "blue", "--options", "red", "blue"]) == 0
    assert not (out / "heatmap_red.png").exists() and (out / "heatmap_blue.png").is_file()
    captured = capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    assert captured.out.count(result["answer"].strip()) >= 1 and "answer:" not in captured.err
    option = [line for line in captured.out.splitlines() if line.startswith("option   : ")]
    expected = (f"option   : {result['answer_option']}. " if result["answer_option"]
                else "option   : none read from the answer")
    assert len(option) == 1 and option[0].startswith(expected)
    assert len(DEMO_DISCLAIMER) <= 200 and "\n" not in DEMO_DISCLAIMER
