"""FOCUS · Load MLLM with stubbed ComfyUI modules: the model list, known
models downloaded from the node (the hub replaced), and the handle that
ComfyUI's model manager can release."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest

from helpers import set_hub_offline


class LoadedModels:
    """The part of comfy.model_management the pack uses, recording calls and
    behaving as ComfyUI does where it matters: each entry watches the torch
    module behind its model with a finalizer that takes dead entries off the
    list, and unloading pops entries by index after ``detach``."""

    def __init__(self) -> None:
        self.current_loaded_models: list = []
        self.freed: list = []
        self.unloaded: list = []
        self.empty = 0
        self.device = "cpu"

    class LoadedModel:
        """ComfyUI's entry: the patcher held weakly, its torch module watched."""

        def __init__(self, patcher, manager) -> None:
            import weakref

            self._model = weakref.ref(patcher)
            self.real_model = weakref.ref(patcher.model)
            self.model_finalizer = weakref.finalize(patcher.model, manager.cleanup_models)

        @property
        def model(self):
            return self._model()

    def load_models_gpu(self, patchers) -> None:
        for patcher in patchers:
            if not any(entry.model is patcher for entry in self.current_loaded_models):
                self.current_loaded_models.insert(0, self.LoadedModel(patcher, self))

    def cleanup_models(self) -> None:
        dead = [i for i, entry in enumerate(self.current_loaded_models) if entry.real_model() is None]
        for i in reversed(dead):
            self.current_loaded_models.pop(i)

    def unload_all_models(self) -> None:
        """What ComfyUI does on Unload Models and /free."""
        for i in reversed(range(len(self.current_loaded_models))):
            entry = self.current_loaded_models[i]
            entry.model.detach(True)
            entry.model_finalizer.detach()
            # ComfyUI 0.25 logs what it unloaded after detach: the patcher must still be there
            self.unloaded.append(entry.model.model.__class__.__name__)
            self.current_loaded_models.pop(i)

    def soft_empty_cache(self) -> None:
        self.empty += 1

    def get_torch_device(self):
        import torch

        return torch.device(self.device)

    def free_memory(self, memory_required, device, keep_loaded=()) -> None:
        self.freed.append((memory_required, str(device)))

    @staticmethod
    def minimum_inference_memory() -> int:
        return 1000

    @staticmethod
    def throw_exception_if_processing_interrupted() -> None:
        pass

    @staticmethod
    def processing_interrupted() -> bool:
        return False


@pytest.fixture
def comfy(pack, tmp_path, monkeypatch):
    """Minimal stand-ins for folder_paths, comfy.model_management and comfy.utils."""
    roots: dict[str, list[str]] = {}
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = str(tmp_path / "models")
    folder_paths.add_model_folder_path = lambda name, path: roots.setdefault(name, []).append(path)
    folder_paths.get_folder_paths = lambda name: roots[name]
    manager = LoadedModels()
    mm = types.ModuleType("comfy.model_management")
    for name in ("load_models_gpu", "unload_all_models", "soft_empty_cache", "get_torch_device", "free_memory",
                 "minimum_inference_memory", "throw_exception_if_processing_interrupted", "processing_interrupted"):
        setattr(mm, name, getattr(manager, name))
    mm.current_loaded_models = manager.current_loaded_models
    bars: list = []
    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total):
            self.total, self.seen = total, []
            bars.append(self)

        def update_absolute(self, value, total=None, preview=None):
            self.seen.append((value, total))

        def update(self, value):
            self.seen.append((value, None))

    utils.ProgressBar = ProgressBar
    comfy_pkg = types.ModuleType("comfy")
    comfy_pkg.model_management, comfy_pkg.utils = mm, utils
    for name, module in {"folder_paths": folder_paths, "comfy": comfy_pkg, "comfy.model_management": mm,
                         "comfy.utils": utils}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(pack.nodes.load_mllm, "_models", {})
    models = tmp_path / "models" / "LLM"
    return types.SimpleNamespace(models=models, roots=roots, manager=manager, bars=bars)


def known_names(pack) -> list[str]:
    return list(pack.focus_engine.mllm.catalog.KNOWN_MODELS)


def test_registry_and_display_names(pack):
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["FocusLoadMLLM"] == "FOCUS · Load MLLM"
    node = pack.NODE_CLASS_MAPPINGS["FocusLoadMLLM"]
    assert node.CATEGORY == "FOCUS" and node.DESCRIPTION and node.OUTPUT_TOOLTIPS


def test_widgets_in_contract_order_with_tooltips(pack, comfy):
    spec = pack.nodes.load_mllm.FocusLoadMLLM.INPUT_TYPES()
    assert list(spec["required"]) == ["model", "precision", "attention", "device", "keep_loaded"]
    assert list(spec["optional"]) == ["quantization"]  # last, so workflows saved before it still line up
    assert spec["optional"]["quantization"][0] == ["none", "8bit", "4bit"]
    assert all(s[1].get("tooltip") for s in [*spec["required"].values(), *spec["optional"].values()])
    assert comfy.roots["LLM"] == [str(comfy.models)]  # models/LLM registered with folder_paths


def test_model_list_is_local_folders_then_known_models(pack, comfy, planted_dir):
    FocusLoadMLLM = pack.nodes.load_mllm.FocusLoadMLLM

    assert FocusLoadMLLM.INPUT_TYPES()["required"]["model"][0] == known_names(pack)  # nothing local yet
    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    shutil.copytree(planted_dir, comfy.models / "llava-1.5-7b-hf")  # a known model present locally
    (comfy.models / "not-a-model").mkdir()
    partial = comfy.models / "Qwen2.5-VL-3B-Instruct"
    shutil.copytree(planted_dir, partial)
    (partial / pack.focus_engine.mllm.catalog.INCOMPLETE_MARKER).write_text("")  # a download cut off
    choices = FocusLoadMLLM.INPUT_TYPES()["required"]["model"][0]
    assert choices[:2] == ["llava-1.5-7b-hf", "tiny-llava"]
    assert choices[2:] == [name for name in known_names(pack) if name != "llava-1.5-7b-hf"]


def test_a_missing_folder_is_refused_with_what_to_do(pack, comfy):
    FocusLoadMLLM = pack.nodes.load_mllm.FocusLoadMLLM

    message = FocusLoadMLLM.VALIDATE_INPUTS(model="my-old-model")
    assert "'my-old-model' was not found" in message and str(comfy.models) in message
    assert "known models" in message
    assert FocusLoadMLLM.VALIDATE_INPUTS(model="llava-1.5-7b-hf") is True  # known: downloadable
    with pytest.raises(ValueError, match="'my-old-model' was not found"):
        FocusLoadMLLM().load("my-old-model", "auto", "auto", "cpu", True)


def test_a_known_model_is_downloaded_once_then_loaded_locally(pack, comfy, planted_dir, monkeypatch):
    import huggingface_hub

    calls = []
    files = {p.name: p.stat().st_size for p in planted_dir.iterdir()}

    def fake_snapshot_download(*, repo_id, local_dir, allow_patterns, tqdm_class):
        calls.append((repo_id, local_dir))
        bar = tqdm_class(total=sum(files.values()), unit="B")
        for name in files:
            shutil.copy(planted_dir / name, Path(local_dir) / name)
            bar.update(files[name])
        bar.close()
        return local_dir

    set_hub_offline(monkeypatch, False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(pack.focus_engine.mllm.catalog, "hub_files", lambda repo: files)
    node = pack.nodes.load_mllm.FocusLoadMLLM()
    (handle,) = node.load("llava-1.5-13b-hf", "auto", "auto", "cpu", True)
    assert calls == [("llava-hf/llava-1.5-13b-hf", str(comfy.models / "llava-1.5-13b-hf"))]
    assert handle.get().family == "llava"
    assert comfy.bars and comfy.bars[0].seen[-1] == (sum(files.values()), sum(files.values()))
    # the next load finds the folder: no hub call, same handle
    monkeypatch.setattr(huggingface_hub, "snapshot_download", None)
    monkeypatch.setattr(pack.focus_engine.mllm.catalog, "hub_files", None)
    (again,) = node.load("llava-1.5-13b-hf", "auto", "auto", "cpu", True)
    assert again is handle and len(calls) == 1 and handle.loads == 1


def test_offline_a_known_model_names_repo_folder_and_files(pack, comfy, monkeypatch):
    set_hub_offline(monkeypatch, True)
    with pytest.raises(ValueError) as err:
        pack.nodes.load_mllm.FocusLoadMLLM().load("Qwen2.5-VL-7B-Instruct", "auto", "auto", "cpu", True)
    text = str(err.value)
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in text and str(comfy.models / "Qwen2.5-VL-7B-Instruct") in text
    assert "config.json" in text and "HF_HUB_OFFLINE" in text


def test_handles_are_shared_and_registered_with_comfy(pack, comfy, planted_dir):
    FocusLoadMLLM = pack.nodes.load_mllm.FocusLoadMLLM

    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    node = FocusLoadMLLM()
    (first,) = node.load("tiny-llava", "auto", "auto", "cpu", True)
    (again,) = node.load("tiny-llava", "auto", "auto", "cpu", True)
    assert first is again and first.loads == 1
    (other,) = node.load("tiny-llava", "fp32", "eager", "cpu", True)
    assert other is not first  # other choices are another model
    registered = {entry.model.owner: entry.model for entry in comfy.manager.current_loaded_models}
    assert len(registered) == 2 and registered[first].model is first.get().model
    assert registered[first].model_size() > 0 and registered[first].loaded_size() == registered[first].model_size()


def test_room_is_made_on_the_gpu_before_loading(pack, comfy, planted_dir):
    """ComfyUI frees other models (an SDXL, a Flux) for the weights' size
    before they load onto its GPU; a CPU model needs no room there."""
    bridge = pack.nodes.bridge
    bridge.make_room(5_000_000, "cpu")
    assert comfy.manager.freed == []
    comfy.manager.device = "cuda"
    bridge.make_room(5_000_000, "auto")
    bridge.make_room(7_000_000, "cuda")
    assert comfy.manager.freed == [(5_001_000, "cuda"), (7_001_000, "cuda")]
    folder = comfy.models / "tiny-llava"
    shutil.copytree(planted_dir, folder)
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert pack.nodes.memory.estimated_bytes(str(folder)) == weights
    assert pack.nodes.memory.estimated_bytes(str(folder), "4bit") < weights / 3


def test_comfy_unloading_releases_the_model_and_it_comes_back(pack, comfy, planted_dir):
    import gc
    import weakref

    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    (handle,) = pack.nodes.load_mllm.FocusLoadMLLM().load("tiny-llava", "auto", "auto", "cpu", True)
    weights = weakref.ref(handle.get().model)
    patcher = weakref.ref(comfy.manager.current_loaded_models[0].model)  # weakly, as ComfyUI holds it
    patcher().detach(unpatch_all=False)  # ComfyUI re-registering a model in use: nothing is released
    assert handle.loaded
    comfy.manager.unload_all_models()  # Unload Models / POST /free
    gc.collect()
    assert comfy.manager.unloaded == ["NoneType"]  # the patcher outlived detach, its weights did not
    assert not handle.loaded and weights() is None  # the weights are gone, not moved
    assert patcher().loaded_size() == 0
    mllm = handle.get()  # the next node that needs it loads it again
    assert handle.loads == 2 and mllm.family == "llava" and len(comfy.manager.current_loaded_models) == 1


def test_keep_loaded_off_releases_after_the_answer(pack, comfy, planted_dir):
    import numpy as np
    from helpers import scene

    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    (handle,) = pack.nodes.load_mllm.FocusLoadMLLM().load("tiny-llava", "auto", "auto", "cpu", False)
    picture = np.asarray(scene((900, 600), (80, 80, 200, 200), colour="blue"), dtype=np.float32) / 255
    image = pack.nodes.common.to_image_tensor([picture])
    answer, *_ = pack.nodes.helpers.FocusVQA().run(handle, image, "Is there a blue square?", 1)
    assert answer and not handle.loaded and comfy.manager.current_loaded_models == []
    pack.nodes.helpers.FocusVQA().run(handle, image, "Is there a blue square?", 1)
    assert handle.loads == 2  # loaded again for the second run


def test_missing_flash_attn_falls_back_to_sdpa(pack, comfy, planted_dir, monkeypatch, caplog):
    loader = pack.focus_engine.mllm.loader
    FocusLoadMLLM = pack.nodes.load_mllm.FocusLoadMLLM

    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    monkeypatch.setattr(loader, "flash_attn_available", lambda: False)
    with caplog.at_level("WARNING"):
        (mllm,) = FocusLoadMLLM().load("tiny-llava", "auto", "flash_attention_2", "cpu", False)
    assert mllm.get().model.config._attn_implementation == "sdpa"
    assert "instead of flash_attention_2" in caplog.text and "flash-attn" in caplog.text


def test_quantization_without_bitsandbytes_says_how_to_install(pack, comfy, planted_dir, monkeypatch):
    import importlib.util

    shutil.copytree(planted_dir, comfy.models / "tiny-llava")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ValueError, match="pip install bitsandbytes"):
        pack.nodes.load_mllm.FocusLoadMLLM().load("tiny-llava", "auto", "auto", "cpu", True, quantization="4bit")
