"""FOCUS · Load MLLM: a model folder of models/LLM, or a known model
downloaded there once, as a FOCUS_MLLM that ComfyUI's model manager can free."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..focus_engine.config import ATTENTIONS, DEVICES, PRECISIONS, QUANTIZATIONS
from . import bridge
from .common import use_mllm
from .memory import ManagedMLLM, estimated_bytes

_models: dict[tuple[str, str, str, str, str], ManagedMLLM] = {}
"""One handle per (folder, precision, attention, device, quantization): the
same choices give the same FOCUS_MLLM, loaded at most once at a time."""


def _attention_or_fallback(attention: str, device: str, precision: str) -> str:
    """flash_attention_2 without flash-attn (or off CUDA) falls back to sdpa, with the reason logged."""
    from ..focus_engine.errors import FocusModelError
    from ..focus_engine.mllm.loader import resolve_attention, resolve_device, resolve_dtype

    if attention != "flash_attention_2":
        return attention
    torch_device = resolve_device(device)
    try:
        return resolve_attention(attention, torch_device, resolve_dtype(precision, torch_device))
    except FocusModelError as exc:
        bridge.log.warning("FOCUS: using sdpa instead of flash_attention_2: %s", exc)
        return "sdpa"


def model_choices() -> list[str]:
    """The local model folders, then the known models not downloaded yet."""
    from ..focus_engine.mllm.catalog import KNOWN_MODELS

    local = bridge.list_model_folders()
    return local + [name for name in KNOWN_MODELS if name not in local]


def model_folder(name: str) -> str:
    """The folder of model ``name``: a local folder as it is (never looked up
    online), else a known model downloaded (or its download resumed) into
    models/LLM, with progress in ComfyUI's bar."""
    from ..focus_engine.errors import FocusModelError
    from ..focus_engine.mllm.catalog import ensure_downloaded, known_model

    if not bridge.is_folder_name(name):
        raise ValueError(bridge.not_a_folder_name_message(str(name)))
    local = bridge.find_model_folder(name)
    if local is not None:
        return local
    known = known_model(name)
    if known is None:
        raise ValueError(bridge.missing_models_message(f"model folder {name!r} was not found"))
    roots = bridge.model_roots()
    if not roots:
        raise ValueError("FOCUS: there is no models/LLM folder to download into; outside ComfyUI, set "
                         "nodes.bridge.MODELS_DIR_OUTSIDE_COMFYUI")
    bar = bridge.progress_bar(100)
    bridge.log.info("FOCUS: downloading %s (%s, about %g GB) into %s", name, known.repo_id, known.download_gb, roots[0])
    try:
        return str(ensure_downloaded(known, roots[0], progress=lambda done, total: bar.update_absolute(done, total)))
    except FocusModelError as exc:
        raise ValueError(f"FOCUS: {exc}") from None


class FocusLoadMLLM:
    DESCRIPTION = (
        "Loads a multimodal LLM (LLaVA-1.5, LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL (and its MoE) or Qwen3.5) for the "
        "FOCUS nodes: a Hugging Face model "
        "folder in ComfyUI/models/LLM, or one of the known models, downloaded there once on first use. ComfyUI's "
        "model manager can free it (Unload Models, /free, room for a diffusion model); it loads again when needed."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "load"
    RETURN_TYPES = ("FOCUS_MLLM",)
    RETURN_NAMES = ("mllm",)
    OUTPUT_TOOLTIPS = ("The loaded model with its FOCUS adapter, for the other FOCUS nodes.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        bridge.register_model_folder()
        return {
            "required": {
                "model": (model_choices(), {"tooltip": (
                    "A Hugging Face model folder inside ComfyUI/models/LLM, or a known model (llava-1.5-7b-hf, "
                    "Qwen2.5-VL-7B-Instruct, Qwen3-VL-8B-Instruct, Qwen3.5-4B, ...): downloaded into "
                    "models/LLM/<name> the first time, then local. A folder name only, never a path.")}),
                "precision": (list(PRECISIONS), {"default": "auto", "tooltip": "auto: bf16 on CUDA, fp16 on MPS, fp32 on CPU."}),
                "attention": (list(ATTENTIONS), {"default": "auto", "tooltip": (
                    "auto: flash_attention_2 when flash-attn is installed on CUDA, else sdpa. FOCUS reads the KV "
                    "cache, so any attention kernel works; a missing flash-attn falls back to sdpa.")}),
                "device": (list(DEVICES), {"default": "auto", "tooltip": "auto: cuda, else mps, else cpu."}),
                "keep_loaded": ("BOOLEAN", {"default": True, "tooltip": (
                    "On: the model stays loaded between runs until ComfyUI needs the memory (Unload Models, /free, "
                    "a diffusion model). Off: released when the FOCUS answer is done.")}),
            },
            "optional": {
                "quantization": (list(QUANTIZATIONS), {"default": "none", "tooltip": (
                    "8bit (LLM.int8) or 4bit (NF4) weights through bitsandbytes (pip install bitsandbytes): a 7B "
                    "model in ~8 or ~5 GB instead of ~15. FOCUS reads the KV cache, not the weights, so it works "
                    "the same.")}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model: str) -> bool | str:
        """Checked here rather than against the list, so a workflow naming a
        folder this machine lacks gets a message saying what to do."""
        from ..focus_engine.mllm.catalog import known_model

        bridge.register_model_folder()
        if not bridge.is_folder_name(model):
            return bridge.not_a_folder_name_message(str(model))
        if bridge.find_model_folder(model) is not None or known_model(model) is not None:
            return True
        return bridge.missing_models_message(f"model folder {model!r} was not found")

    def load(self, model: str, precision: str, attention: str, device: str, keep_loaded: bool,
             quantization: str = "none") -> tuple[Any]:
        from ..focus_engine import load_mllm

        bridge.register_model_folder()
        path = model_folder(model)
        key = (path, precision, attention, device, quantization)
        handle = _models.get(key)
        if handle is None:
            load = partial(load_mllm, path, device=device, dtype=precision, quantization=quantization,
                           attn_implementation=_attention_or_fallback(attention, device, precision))
            room = partial(bridge.make_room, estimated_bytes(path, quantization), device)
            handle = ManagedMLLM(load, f"{model} ({precision}, {attention}, {device}, {quantization})",
                                 before_load=room)
            _models[key] = handle
        handle.keep_loaded = keep_loaded
        use_mllm(handle)  # loaded here, so a bad folder stops this node with the engine's message
        return (handle,)
