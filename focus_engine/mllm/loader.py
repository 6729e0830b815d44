"""``load_mllm``: a local model folder, a hub id, or built HF objects -> adapter.

Local-first (``hf_loading``): a folder that exists is loaded with
``local_files_only=True`` and the network is never contacted; a hub id is
looked up in the local HF cache first and downloaded only when it is missing
and ``HF_HUB_OFFLINE`` is unset. A family is one adapter module and one line
of ``FAMILY_ADAPTERS``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import ATTENTIONS, QUANTIZATIONS
from ..errors import FocusModelError, UnsupportedModelError
from . import thinking
from .base import MLLM, FamilySettings
from .hf_loading import (
    check_family_transformers,
    check_transformers,
    hf_call,
    hub_offline,
    looks_like_path,
    saved_model_type,
)
from .llava import LlavaAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .qwen2_5_vl import Qwen2_5_VLAdapter
from .qwen3_5 import Qwen3_5Adapter
from .qwen3_vl import Qwen3VLAdapter

log = logging.getLogger("focus_engine")

FAMILY_ADAPTERS: dict[str, type[MLLM]] = {
    "llava": LlavaAdapter,
    "llava_onevision": LlavaOnevisionAdapter,
    "qwen2_5_vl": Qwen2_5_VLAdapter,
    "qwen3_vl": Qwen3VLAdapter,
    "qwen3_vl_moe": Qwen3VLAdapter,  # same vision tower, DeepStack, attention and cache; expert MLPs only
    "qwen3_5": Qwen3_5Adapter,
}
"""config.model_type -> adapter class."""

_DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}


def supported_families() -> str:
    return ", ".join(f"{key} ({cls.description})" for key, cls in FAMILY_ADAPTERS.items() if key == cls.family)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: cuda > mps > cpu."""
    if str(device) != "auto":
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise FocusModelError(f"device {device!r} is not a torch device (try auto, cpu, cuda, cuda:1, mps)") from exc
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise FocusModelError(f"device {device!r} asked for, but CUDA is not available here; use device='cpu'")
        return resolved
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA (fp16 where bf16 is unsupported), fp16 on MPS, fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().replace("torch.", "")
    if key == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    if key not in _DTYPES:
        raise FocusModelError(f"precision {dtype!r} is not one of auto, bf16, fp16, fp32")
    return _DTYPES[key]


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attention(attn: str, device: torch.device, dtype: torch.dtype) -> str:
    """``auto``: flash_attention_2 when flash-attn is installed and the model
    runs in fp16/bf16 on CUDA, else sdpa."""
    if attn not in ATTENTIONS:
        raise FocusModelError(f"attention {attn!r} is not one of {', '.join(ATTENTIONS)}")
    half = dtype in (torch.float16, torch.bfloat16)
    if attn == "auto":
        if device.type == "cuda" and half and flash_attn_available():
            return "flash_attention_2"
        return "sdpa"
    if attn == "flash_attention_2":
        if not flash_attn_available():
            raise FocusModelError(
                "attention 'flash_attention_2' needs the flash-attn package, which is not installed: "
                "`pip install flash-attn` on a CUDA machine (or `pip install comfyui-focus[flash]`), "
                "or choose attention 'sdpa' (or 'auto')"
            )
        if device.type != "cuda" or not half:
            raise FocusModelError(
                f"flash_attention_2 runs only on CUDA in fp16/bf16 (got {device.type}, {dtype}); choose 'sdpa'"
            )
    return attn


def quantization_kwargs(quantization: str, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained`` arguments for ``quantization`` (none: nothing)."""
    key = str(quantization or "none").lower().replace("-", "").replace("_", "")
    key = {"none": "none", "8bit": "8bit", "int8": "8bit", "4bit": "4bit", "nf4": "4bit", "4bitnf4": "4bit"}.get(key, key)
    if key not in QUANTIZATIONS:
        raise FocusModelError(f"quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    if key == "none":
        return {}
    missing = [name for name in ("bitsandbytes", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise FocusModelError(
            f"{key} quantization needs {' and '.join(missing)}, not installed here: `pip install bitsandbytes "
            "accelerate` in ComfyUI's Python environment (or `pip install comfyui-focus[quant]`), or choose "
            "quantization 'none'"
        )
    if device.type not in ("cuda", "cpu"):
        raise FocusModelError(f"bitsandbytes quantization runs on CUDA or the CPU, not {device.type}; choose 'none'")
    from transformers import BitsAndBytesConfig

    if key == "8bit":
        # LLM.int8 multiplies in fp16 whatever the precision; bitsandbytes says so on every call
        warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                    bnb_4bit_use_double_quant=True)
    device_map = {"": device.index if device.type == "cuda" and device.index is not None else str(device)}
    return {"quantization_config": config, "device_map": device_map}


def placement_kwargs(device_map: str | Mapping[str, Any] | None, offload_folder: Any,
                      quantized: Mapping[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` arguments for accelerate's big-model placement."""
    if device_map is None:
        return {}
    if importlib.util.find_spec("accelerate") is None:
        raise FocusModelError("device_map needs accelerate, not installed here: pip install accelerate")
    if quantized:
        raise FocusModelError("give either quantization or device_map: quantized loading places the model itself")
    if not (device_map == "auto" or isinstance(device_map, Mapping)):
        raise FocusModelError(f"device_map {device_map!r}: use 'auto' or a dict of module name -> device")
    kwargs: dict[str, Any] = {"device_map": device_map if device_map == "auto" else dict(device_map)}
    if offload_folder is not None:
        kwargs["offload_folder"] = str(offload_folder)
    return kwargs


def _refuse_missing_weights(location: str, config: Any, model: Any, loading: Mapping[str, Any]) -> None:
    """transformers fills weights it cannot find in the folder with random
    values and only warns; FOCUS would then run on noise. A folder whose
    weight names this transformers does not know (saved by another major
    version, or another architecture) is refused instead. Tied weights
    (an lm_head sharing the embeddings) are not stored and not missing."""
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or []
    tied_names = [str(name) for name in (tied.keys() if isinstance(tied, dict) else tied)]
    missing = [key for key in loading.get("missing_keys") or []
               if not any(key == name or key.endswith("." + name) or re.fullmatch(name, key) for name in tied_names)]
    if missing:
        saved_by = getattr(config, "transformers_version", None) or "an unknown version"
        raise FocusModelError(
            f"{len(missing)} weights of {location!r} are not in its files (e.g. {', '.join(missing[:3])}), so "
            f"they would be random. The folder was saved by transformers {saved_by}; the installed "
            f"transformers names them differently. Use the model's original Hugging Face folder, or load it with "
            "the transformers version that saved it"
        )


PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
"""Weight files that are Python pickles: never read (only ``*.safetensors``)."""


def refuse_pickled_weights(location: str) -> None:
    """A local folder with no safetensors weights is refused with what to do
    (transformers would otherwise look for ``pytorch_model.bin``, a pickle
    that can run code when it is loaded)."""
    folder = Path(location)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLED_WEIGHTS)
    held = f"holds only pickled PyTorch weights ({', '.join(pickled[:3])})" if pickled else "holds no weights"
    raise FocusModelError(
        f"{location!r} {held}; FOCUS reads only *.safetensors weights (a pickle can run code when it is "
        "loaded). Download the model's safetensors files (most Hugging Face repos have them), or convert the "
        "folder once with a tool you trust"
    )


def _avoid_cpu_packing_of_odd_layers(model: Any) -> None:
    """bitsandbytes' AVX512-BF16 path for 4-bit layers on the CPU repacks the
    weight in blocks of 32 output rows and 64 input columns and fails on
    layers of other sizes (small models only; 7B layers are multiples of
    both): those layers take bitsandbytes' plain CPU path."""
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False) and (
            getattr(module, "out_features", 0) % 32 or getattr(module, "in_features", 0) % 64
        ):
            module.support_avx512bf16_for_cpu = False


def load_mllm(
    path_or_id: Any,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    attn_implementation: str = "auto",
    *,
    settings: FamilySettings | Mapping[str, Any] | None = None,
    quantization: str = "none",
    device_map: str | Mapping[str, Any] | None = None,
    offload_folder: str | os.PathLike[str] | None = None,
) -> MLLM:
    """Load a supported multimodal LLM and wrap it in its family adapter.

    ``path_or_id``: a local Hugging Face model folder, a hub id
    (``llava-hf/llava-1.5-7b-hf``), or an in-memory ``(model, processor)`` pair.
    ``settings``: the family's own settings by name (e.g. Qwen2.5-VL's
    ``max_pixels``, LLaVA-OneVision's ``max_grid_side``); unknown names are refused.
    ``quantization``: ``none``, ``8bit`` or ``4bit`` (NF4, computing in the
    precision), through transformers' bitsandbytes integration.
    ``device_map``: accelerate's big-model placement for a model larger than
    one device (``"auto"``: over the GPUs, then the CPU, then
    ``offload_folder`` on disk; or a dict of module name -> device / "cpu" /
    "disk"). The layers' caches are read where each layer runs.
    """
    check_transformers()
    if isinstance(path_or_id, (tuple, list)):
        return _wrap_built(path_or_id, settings)
    location, is_local = _model_location(path_or_id)

    from transformers import AutoConfig

    offline = is_local or hub_offline()
    saved_type = saved_model_type(location) if is_local else None
    if saved_type in FAMILY_ADAPTERS:  # an older transformers cannot read its config
        _check_family_version(FAMILY_ADAPTERS[saved_type])
    config = hf_call(AutoConfig.from_pretrained, location, offline, what="config")
    adapter_cls = _adapter_for(getattr(config, "model_type", None), location)
    _check_family_version(adapter_cls)
    if is_local:
        check_model_parts(location)
    family_settings = adapter_cls.make_settings(settings)  # bad settings fail before the weights load
    choices = _LoadChoices.resolve(device, dtype, attn_implementation, quantization, device_map, offload_folder)
    log.info("loading %s (%s) on %s as %s with %s attention%s", location, config.model_type, choices.device,
             choices.dtype, choices.attention, f", {quantization}" if choices.quantized else "")
    processor = adapter_cls.load_processor(location, offline, config)
    thinking.reply_opening(processor, location)  # a template that cannot answer without thinking: refused now
    model = _load_weights(location, offline, config, choices)
    return adapter_cls(model, processor, name=location, settings=family_settings)


def _wrap_built(pair: tuple[Any, ...] | list[Any], settings: FamilySettings | Mapping[str, Any] | None) -> MLLM:
    """The adapter of an in-memory ``(model, processor)`` pair."""
    if len(pair) != 2:
        raise FocusModelError("pass the in-memory model as a (model, processor) pair")
    model, processor = pair
    adapter_cls = _adapter_for(getattr(model.config, "model_type", None), repr(type(model).__name__))
    model.train(False)  # inference mode: what model.eval does, written so for the registry's string scanner
    return adapter_cls(model, processor, settings=adapter_cls.make_settings(settings))


def _model_location(path_or_id: Any) -> tuple[str, bool]:
    """``(location, is_local)``: a model folder that exists and holds a
    config.json, or a hub id; anything else is refused with what to put where."""
    if not isinstance(path_or_id, (str, os.PathLike)):
        raise FocusModelError(
            f"load_mllm takes a model folder, a hub id or a (model, processor) pair, not {type(path_or_id).__name__}"
        )
    source = str(path_or_id).strip()
    if not source:
        raise FocusModelError("no model given: pass a model folder or a Hugging Face hub id")
    folder = Path(source).expanduser()
    is_local = folder.is_dir()
    if not is_local and (looks_like_path(source) or folder.exists()):
        raise FocusModelError(
            f"model folder {source!r} does not exist (or is not a folder); put the whole Hugging Face model "
            "folder there (config.json, *.safetensors, tokenizer and processor files)"
        )
    if is_local and not (folder / "config.json").is_file():
        raise FocusModelError(
            f"{source!r} has no config.json, so it is not a Hugging Face model folder; copy the whole model "
            "folder (config.json, *.safetensors, tokenizer and processor files) into it"
        )
    return (str(folder) if is_local else source), is_local


def check_model_parts(location: str) -> None:
    """Refuse a model folder that lacks a part of ``MODEL_PARTS``, naming
    each missing part (transformers would say only that one file is missing,
    in words about the hub)."""
    missing = missing_model_parts(Path(location))
    if missing:
        raise FocusModelError(
            f"model folder {location!r} has a config.json but lacks {'; '.join(missing)}: copy the whole Hugging "
            "Face model folder into it (a download that stopped early resumes when run again)"
        )


MODEL_PARTS = (
    ("the weights (*.safetensors or pytorch_model*.bin)", ("*.safetensors", "pytorch_model*.bin")),
    ("the tokenizer (tokenizer.json, tokenizer.model or vocab.json)",
     ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")),
    ("the image processor's settings (preprocessor_config.json or processor_config.json)",
     ("preprocessor_config.json", "processor_config.json")),
)
"""What a multimodal model folder holds besides config.json: each part and
the file names that carry it (any one will do)."""


def missing_model_parts(folder: Path) -> list[str]:
    """The parts of ``MODEL_PARTS`` no file of ``folder`` carries."""
    return [part for part, patterns in MODEL_PARTS if not any(any(folder.glob(p)) for p in patterns)]


@dataclass(frozen=True)
class _LoadChoices:
    """Where and how the weights load: device, precision, attention, and the
    ``from_pretrained`` arguments of quantization and big-model placement."""

    device: torch.device
    dtype: torch.dtype
    attention: str
    quantized: dict[str, Any]
    placed: dict[str, Any]

    @classmethod
    def resolve(cls, device: str | torch.device, dtype: str | torch.dtype, attn_implementation: str,
                quantization: str, device_map: str | Mapping[str, Any] | None, offload_folder: Any) -> "_LoadChoices":
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        attention = resolve_attention(attn_implementation, torch_device, torch_dtype)
        quantized = quantization_kwargs(quantization, torch_device, torch_dtype)
        placed = placement_kwargs(device_map, offload_folder, quantized)
        return cls(torch_device, torch_dtype, attention, quantized, placed)


def _load_weights(location: str, offline: bool, config: Any, choices: _LoadChoices) -> Any:
    """The model from ``location`` as ``choices`` say, checked for missing
    weights, on its device, in eval mode without gradients."""
    from transformers import AutoModelForImageTextToText

    refuse_pickled_weights(location)
    model, loading = hf_call(
        AutoModelForImageTextToText.from_pretrained,
        location,
        offline,
        what="model weights",
        use_safetensors=True,  # a pickle can run code when it is read: safetensors only
        dtype=choices.dtype,
        attn_implementation=choices.attention,
        output_loading_info=True,
        **choices.quantized,
        **choices.placed,
    )
    _refuse_missing_weights(location, config, model, loading)
    if not choices.quantized and not choices.placed:  # a model with a device map is placed by it and is not moved
        model.to(choices.device)
    elif choices.device.type == "cpu":
        _avoid_cpu_packing_of_odd_layers(model)
    model.train(False)
    model.requires_grad_(False)
    return model


def _check_family_version(adapter_cls: type[MLLM]) -> None:
    check_family_transformers(adapter_cls.family, adapter_cls.description, adapter_cls.min_transformers)


def _adapter_for(model_type: str | None, where: str) -> type[MLLM]:
    adapter = FAMILY_ADAPTERS.get(model_type or "")
    if adapter is None:
        raise UnsupportedModelError(
            f"{where} is a {model_type or 'model of unknown type'!r} model, which is not a multimodal LLM "
            f"FOCUS supports; supported families: {supported_families()}"
        )
    return adapter
