"""FOCUS · Load MLLM with stubbed ComfyUI modules."""

from __future__ import annotations

import shutil
import sys
import types

import pytest


@pytest.fixture
def comfy(pack, tmp_path, monkeypatch):
    """Minimal stand-ins for folder_paths and comfy.model_management / comfy.utils."""
    calls = {"unload": 0, "empty": 0}
    roots: dict[str, list[str]] = {}
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = str(tmp_path / "models")
    folder_paths.add_model_folder_path = lambda name, path: roots.setdefault(name, []).append(path)
    folder_paths.get_folder_paths = lambda name: roots[name]
    mm = types.ModuleType("comfy.model_management")
    mm.unload_all_models = lambda: calls.__setitem__("unload", calls["unload"] + 1)
    mm.soft_empty_cache = lambda: calls.__setitem__("empty", calls["empty"] + 1)
    comfy_pkg = types.ModuleType("comfy")
    comfy_pkg.model_management = mm
    for name, module in {"folder_paths": folder_paths, "comfy": comfy_pkg, "comfy.model_management": mm}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(pack.nodes.load_mllm, "_loaded", {})
    return types.SimpleNamespace(models=tmp_path / "models" / "LLM", calls=calls, roots=roots)


def test_registry_and_display_names(pack):
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["FocusLoadMLLM"] == "FOCUS · Load MLLM"
    node = pack.NODE_CLASS_MAPPINGS["FocusLoadMLLM"]
    assert node.CATEGORY == "FOCUS" and node.DESCRIPTION and node.OUTPUT_TOOLTIPS


def test_widgets_in_contract_order_with_tooltips(pack, comfy):
    FocusLoadMLLM = pack.nodes.load_mllm.FocusLoadMLLM

    required = FocusLoadMLLM.INPUT_TYPES()["required"]
    assert list(required) == ["model", "precision", "attention", "device", "keep_loaded"]
    assert all(spec[1].get("tooltip") for spec in required.values())
    assert comfy.roots["LLM"] == [str(comfy.models)]  # models/LLM registered with folder_paths


def test_empty_model_folder_says_where_to_put_models(pack, comfy):
    NO_MODELS, FocusLoadMLLM = pack.nodes.load_mllm.NO_MODELS, pack.nodes.load_mllm.FocusLoadMLLM

    assert FocusLoadMLLM.INPUT_TYPES()["required"]["model"][0] == [NO_MODELS]
    with pytest.raises(ValueError, match="models/LLM/llava-1.5-7b-hf"):
        FocusLoadMLLM().load(NO_MODELS, "auto", "auto", "auto", True)
    with pytest.raises(ValueError, match="'gone' was not found"):
        FocusLoadMLLM().load("gone", "auto", "auto", "auto", True)


def test_load_cache_and_release(pack, comfy, planted_dir):
    FocusLoadMLLM = pack.nodes.load_mllm.FocusLoadMLLM

    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    (comfy.models / "not-a-model").mkdir()
    assert FocusLoadMLLM.INPUT_TYPES()["required"]["model"][0] == ["tiny-llava"]
    node = FocusLoadMLLM()
    (first,) = node.load("tiny-llava", "auto", "auto", "cpu", True)
    (again,) = node.load("tiny-llava", "auto", "auto", "cpu", True)
    assert first is again and first.family == "llava"
    assert comfy.calls["unload"] == 1 and comfy.calls["empty"] == 1  # memory freed before the one real load
    (other,) = node.load("tiny-llava", "fp32", "eager", "cpu", False)
    assert other is not first  # another precision/attention is another cache entry
    (released,) = node.load("tiny-llava", "auto", "auto", "cpu", False)
    assert released is first  # handed out once more, then dropped from the cache
    (fresh,) = node.load("tiny-llava", "auto", "auto", "cpu", True)
    assert fresh is not first


def test_missing_flash_attn_falls_back_to_sdpa(pack, comfy, planted_dir, monkeypatch, caplog):
    loader = pack.focus_engine.mllm.loader
    FocusLoadMLLM = pack.nodes.load_mllm.FocusLoadMLLM

    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    monkeypatch.setattr(loader, "flash_attn_available", lambda: False)
    with caplog.at_level("WARNING"):
        (mllm,) = FocusLoadMLLM().load("tiny-llava", "auto", "flash_attention_2", "cpu", False)
    assert mllm.model.config._attn_implementation == "sdpa"
    assert "instead of flash_attention_2" in caplog.text and "flash-attn" in caplog.text
