"""benchmarks/gpu_check.py end to end on the CPU at tiny size (issue 23).

The real run (published geometry, bf16, SDPA's flash kernel forced) needs a
CUDA machine; here the same code builds width-64 models of every family,
times the three answers and the four kinds of forward pass, and compares
the SDPA map with the eager one in fp32."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from families import FAMILY

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # four families, three answers and four timed passes each: about a minute on two busy cores
def test_tiny_run_reports_every_family_and_equal_maps(tmp_path, capsys):
    gpu_check = load_script()
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--size", "tiny", "--no-quant", "--zoomeye-depth", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["size"] == "tiny" and report["environment"]["device"] == "cpu"
    assert report["maps_all_passed"] is True
    for family in gpu_check.FAMILIES:
        r = report["families"][family]
        if "skipped" in r:  # only a family this transformers or engine lacks may be left out, and says why
            assert FAMILY[family].newer_than_the_floor and r["skipped"]
            continue
        assert "error" not in r, r.get("error")
        for name in ("plain", "focus", "focus_whole", "zoomeye"):
            method = r["methods"][name]
            assert method["seconds"] > 0 and method["peak_memory_bytes"] > 0
            assert method["peak_memory_kind"] == "cpu_rss"
        assert r["methods"]["plain"]["forward_passes"] == 0
        assert r["methods"]["focus"]["forward_passes"] >= 2  # a relevance prefill and at least one verification
        # each image prefilled once or every prompt whole: the same search, the same passes
        assert r["methods"]["focus_whole"]["forward_passes"] == r["methods"]["focus"]["forward_passes"]
        assert r["methods"]["focus"]["times_plain"] > 0
        assert r["methods"]["zoomeye"]["forward_passes"] >= 1
        for kind in ("relevance_prefill", "verification", "target_extraction", "answer"):
            assert r["forward_passes"][kind]["seconds"] > 0
        assert r["forward_passes"]["answer"]["new_tokens"] >= 1
        maps = r["maps"]
        assert maps["passed"] and maps["peak_cell_equal"] and maps["max_abs_diff"] <= 1e-4
        assert "not available on CPU" in maps["note"]
        assert r["precision"]["fp32"]["weights_bytes"] > 0
        assert r["precision"]["8bit"] == {"skipped": "--no-quant"}
        assert r["published"] in printed
    assert "maps equal" in printed


@pytest.mark.slow  # saves the tiny model and loads it twice through bitsandbytes
def test_tiny_run_measures_8bit_and_4bit(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # bitsandbytes' CPU backend looks for a kernel on the hub when it loads: nothing is downloaded here
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    gpu_check = load_script()
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--size", "tiny", "--families", "llava", "--zoomeye-depth", "1", "--tmp", str(tmp_path),
                           "--out", str(out)]) == 0
    precision = json.loads(out.read_text())["families"]["llava"]["precision"]
    unavailable = gpu_check.quant_unavailable("cpu")
    for quantization in ("8bit", "4bit"):
        if unavailable:  # no bitsandbytes here: the report says so instead of a number
            assert precision[quantization] == {"skipped": unavailable}
            continue
        entry = precision[quantization]
        assert entry["weights_bytes"] > 0 and entry["load_seconds"] > 0
        assert entry["plain"]["peak_memory_bytes"] > 0 and entry["focus"]["forward_passes"] >= 2
    assert not list(tmp_path.glob("focus_gpu_check_*"))  # the saved model is removed
