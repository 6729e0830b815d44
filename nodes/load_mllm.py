"""FOCUS · Load MLLM: a model folder from models/LLM as a FOCUS_MLLM."""

from __future__ import annotations

from typing import Any

from ..focus_engine.config import ATTENTIONS, DEVICES, PRECISIONS
from . import bridge

NO_MODELS = "(no model folders in models/LLM)"

_loaded: dict[tuple[str, str, str, str], Any] = {}
"""Models kept loaded, by (folder, precision, attention, device)."""


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


class FocusLoadMLLM:
    DESCRIPTION = (
        "Loads a multimodal LLM (LLaVA-1.5, LLaVA-OneVision or Qwen2.5-VL) from a Hugging Face model folder in "
        "ComfyUI/models/LLM for the FOCUS nodes. Loading is local only; nothing is downloaded."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "load"
    RETURN_TYPES = ("FOCUS_MLLM",)
    RETURN_NAMES = ("mllm",)
    OUTPUT_TOOLTIPS = ("The loaded model with its FOCUS adapter, for the other FOCUS nodes.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        bridge.register_model_folder()
        folders = bridge.list_model_folders() or [NO_MODELS]
        return {
            "required": {
                "model": (folders, {"tooltip": "A whole Hugging Face model folder inside ComfyUI/models/LLM."}),
                "precision": (list(PRECISIONS), {"default": "auto", "tooltip": "auto: bf16 on CUDA, fp16 on MPS, fp32 on CPU."}),
                "attention": (list(ATTENTIONS), {"default": "auto", "tooltip": (
                    "auto: flash_attention_2 when flash-attn is installed on CUDA, else sdpa. FOCUS reads the KV "
                    "cache, so any attention kernel works; a missing flash-attn falls back to sdpa.")}),
                "device": (list(DEVICES), {"default": "auto", "tooltip": "auto: cuda, else mps, else cpu."}),
                "keep_loaded": ("BOOLEAN", {"default": True, "tooltip": (
                    "Keep the model in memory for the next run (cached by folder, precision, attention and device); "
                    "off releases it once the workflow is done with it.")}),
            }
        }

    def load(self, model: str, precision: str, attention: str, device: str, keep_loaded: bool) -> tuple[Any]:
        from ..focus_engine import load_mllm

        bridge.register_model_folder()
        if model == NO_MODELS:
            raise ValueError(bridge.missing_models_message("no model folders were found"))
        path = bridge.resolve_model_folder(model)
        key = (path, precision, attention, device)
        if key in _loaded:
            mllm = _loaded[key]
            if not keep_loaded:
                del _loaded[key]
            return (mllm,)
        bridge.free_memory()
        mllm = load_mllm(path, device=device, dtype=precision,
                         attn_implementation=_attention_or_fallback(attention, device, precision))
        if keep_loaded:
            _loaded[key] = mllm
        return (mllm,)

