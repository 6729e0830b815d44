"""load_mllm: round trips through save_pretrained, local-first, clear errors."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from helpers import set_hub_offline
from focus_engine import FocusModelError, UnsupportedModelError, load_mllm
from focus_engine.mllm import loader


def test_round_trip_from_folder(planted_dir):
    mllm = load_mllm(str(planted_dir))
    assert mllm.family == "llava"
    assert mllm.device.type == "cpu" and mllm.dtype == torch.float32  # auto on a CPU machine
    assert mllm.num_layers == 4 and mllm.tokens_per_side == 24
    assert mllm.model.config._attn_implementation == "sdpa"  # auto without flash-attn


def test_loading_a_folder_never_touches_the_network(planted_dir, monkeypatch):
    set_hub_offline(monkeypatch, False)

    def refuse(*args, **kwargs):
        raise AssertionError("load_mllm tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert load_mllm(planted_dir).family == "llava"  # a Path works too


def test_in_memory_pair(planted):
    again = load_mllm((planted.model, planted.processor))
    assert again.family == "llava" and again.model is planted.model


def test_explicit_precision(planted_dir):
    mllm = load_mllm(str(planted_dir), device="cpu", dtype="bf16", attn_implementation="eager")
    assert mllm.dtype == torch.bfloat16
    assert mllm.model.config._attn_implementation == "eager"


def test_missing_folder(tmp_path):
    with pytest.raises(FocusModelError, match="does not exist"):
        load_mllm(str(tmp_path / "no-such-model"))


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(FocusModelError, match="no config.json"):
        load_mllm(str(tmp_path))


def test_folder_that_is_not_an_mllm(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError) as err:
        load_mllm(str(tmp_path))
    message = str(err.value)
    assert "'llama'" in message and "llava" in message and "supported families" in message


def test_broken_folder(tmp_path, planted_dir):
    # a config that says llava but no weights / processor files: each missing part named
    (tmp_path / "config.json").write_text((planted_dir / "config.json").read_text())
    with pytest.raises(FocusModelError, match="lacks the weights .*; the tokenizer .*; the image processor"):
        load_mllm(str(tmp_path))


def test_corrupt_config(tmp_path, planted_dir):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(planted_dir, folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(FocusModelError, match="could not load the config"):
        load_mllm(str(folder))


def test_bad_arguments(planted_dir):
    with pytest.raises(FocusModelError, match="precision"):
        load_mllm(str(planted_dir), dtype="int3")
    with pytest.raises(FocusModelError, match="attention"):
        load_mllm(str(planted_dir), attn_implementation="magic")
    with pytest.raises(FocusModelError, match="not a torch device"):
        load_mllm(str(planted_dir), device="gpu0")
    with pytest.raises(FocusModelError):
        load_mllm(12)
    with pytest.raises(FocusModelError, match="no model"):
        load_mllm("  ")


def test_flash_attention_without_package_is_actionable(planted_dir, monkeypatch):
    monkeypatch.setattr(loader, "flash_attn_available", lambda: False)
    with pytest.raises(FocusModelError, match="flash-attn"):
        load_mllm(str(planted_dir), attn_implementation="flash_attention_2")
    # auto falls back to sdpa
    assert loader.resolve_attention("auto", torch.device("cuda"), torch.bfloat16) == "sdpa"
    monkeypatch.setattr(loader, "flash_attn_available", lambda: True)
    assert loader.resolve_attention("auto", torch.device("cuda"), torch.bfloat16) == "flash_attention_2"
    assert loader.resolve_attention("auto", torch.device("cpu"), torch.float32) == "sdpa"


def test_auto_dtype_rules():
    assert loader.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert loader.resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    assert loader.resolve_dtype(torch.bfloat16, torch.device("cpu")) == torch.bfloat16


def test_demo_model_metadata(planted_dir):
    meta = json.loads((planted_dir / "focus_demo.json").read_text())
    assert meta["seed"] == 1 and "red" in meta["colours"]


def test_yes_no_tokens_are_looked_up_only_for_verification(planted_dir, monkeypatch):
    """A model whose vocabulary cannot say Yes/No still loads and maps relevance."""
    from focus_engine.mllm.base import MLLM

    def unknown(self, word):
        raise FocusModelError(f"the tokenizer cannot encode {word!r}; yes/no verification needs it")

    monkeypatch.setattr(MLLM, "_answer_token_ids", unknown)
    mllm = load_mllm(str(planted_dir))
    from helpers import scene

    image = scene((400, 300), (10, 10, 60, 60))
    assert mllm.relevance_map(image, "red").grid.shape == (18, 24)
    with pytest.raises(FocusModelError, match="Yes"):
        mllm.yes_no_confidence([image], ["red"])


@pytest.mark.parametrize("version", ["4.55.4", "4.40.0", "6.0.0", "none", "garbage"])
def test_an_unsupported_transformers_gets_the_supported_range(version):
    from focus_engine.mllm.hf_loading import check_transformers

    with pytest.raises(FocusModelError, match=r"supports transformers >= 4\.56 and < 6: pip install"):
        check_transformers(version)


@pytest.mark.parametrize("version", ["4.56.0", "4.56.2", "4.57.1", "5.0.0", "5.24.0", "5.99.1.dev0"])
def test_supported_transformers_versions_pass(version):
    from focus_engine.mllm.hf_loading import check_transformers

    assert check_transformers(version) == version


def test_load_mllm_checks_transformers_first(planted_dir, monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "4.40.0" if name == "transformers" else real(name))
    with pytest.raises(FocusModelError, match="transformers 4.40.0 is installed"):
        load_mllm(str(planted_dir))


def test_weights_the_folder_lacks_are_refused_not_made_random(planted_dir, tmp_path):
    """A folder whose weight names the installed transformers does not know
    (e.g. saved by another major version) would load with random weights
    and only a warning; load_mllm refuses it."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "renamed"
    shutil.copytree(planted_dir, folder)
    (path,) = folder.glob("*.safetensors")
    weights = load_file(path)
    key = next(k for k in weights if "multi_modal_projector" in k)
    weights["old_name." + key] = weights.pop(key)
    save_file(weights, path, metadata={"format": "pt"})
    with pytest.raises(FocusModelError, match="would be random") as err:
        load_mllm(str(folder))
    assert "multi_modal_projector" in str(err.value)


def test_portable_llava_weights_keep_the_model(planted_dir, tmp_path):
    """The renaming that lets transformers 4.x read a LLaVA saved by 5.x
    changes names only: the model loads to the same outputs."""
    import shutil

    from safetensors import safe_open

    from focus_engine.testing import portable_llava_weights
    from helpers import scene

    folder = tmp_path / "portable"
    shutil.copytree(planted_dir, folder)
    portable_llava_weights(folder)
    (path,) = folder.glob("*.safetensors")
    with safe_open(path, "pt") as f:
        vision = [k for k in f.keys() if k.startswith("vision_tower.")]
    assert vision and all(k.startswith("vision_tower.vision_model.") for k in vision)
    image = scene((800, 600), (100, 100, 220, 220), colour="green")
    before = load_mllm(str(planted_dir)).relevance_map(image, "green").grid
    after = load_mllm(str(folder)).relevance_map(image, "green").grid
    assert (before == after).all()


def test_a_model_spread_by_a_device_map_reads_each_layers_cache_where_it_lives(planted_dir, tmp_path):
    """accelerate's big-model loading: half the decoder layers offloaded to
    disk, the rest on the CPU; the relevance map is the same as the model
    in one piece (each layer's cache is read where that layer ran)."""
    from helpers import scene

    whole = load_mllm(str(planted_dir), device="cpu")
    layers = whole.model.config.text_config.num_hidden_layers
    device_map = {"model.vision_tower": "cpu", "model.multi_modal_projector": "cpu",
                  "model.language_model.embed_tokens": "cpu", "model.language_model.norm": "cpu",
                  "model.language_model.rotary_emb": "cpu", "lm_head": "cpu",
                  **{f"model.language_model.layers.{i}": "disk" if i % 2 else "cpu" for i in range(layers)}}
    spread = load_mllm(str(planted_dir), device="cpu", device_map=device_map, offload_folder=tmp_path / "offload")
    assert set(spread.model.hf_device_map.values()) == {"cpu", "disk"}
    offloaded = spread.model.model.language_model.layers[1].self_attn.v_proj.weight
    assert offloaded.device.type == "meta"  # not in memory: read from disk when the layer runs
    image = scene((900, 600), (100, 100, 220, 220), colour="green")
    assert (spread.relevance_map(image, "green").grid == whole.relevance_map(image, "green").grid).all()
    auto = load_mllm(str(planted_dir), device="cpu", device_map="auto", offload_folder=tmp_path / "auto")
    assert (auto.relevance_map(image, "green").grid == whole.relevance_map(image, "green").grid).all()
    with pytest.raises(FocusModelError, match="either quantization or device_map"):
        load_mllm(str(planted_dir), device="cpu", device_map="auto", quantization="4bit")
