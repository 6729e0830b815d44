"""``load_mllm``: a local model folder, a hub id, or built HF objects -> adapter.

Local-first: a folder that exists is loaded with ``local_files_only=True`` and
the network is never contacted; a hub id is looked up in the local HF cache
first and downloaded only when it is missing and ``HF_HUB_OFFLINE`` is unset.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import FocusModelError, UnsupportedModelError
from .base import MLLM
from .llava import LlavaAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .llava_onevision import image_only_processor_class as onevision_image_only
from .qwen2_5_vl import Qwen2_5_VLAdapter
from .qwen2_5_vl import image_only_processor_class as qwen_image_only

log = logging.getLogger("focus_engine")

FAMILY_ADAPTERS: dict[str, type[MLLM]] = {
    "llava": LlavaAdapter,
    "llava_onevision": LlavaOnevisionAdapter,
    "qwen2_5_vl": Qwen2_5_VLAdapter,
}
IMAGE_ONLY_PROCESSORS = {LlavaOnevisionAdapter: onevision_image_only, Qwen2_5_VLAdapter: qwen_image_only}
"""Families whose processor wants a video processor (hence torchvision)."""
"""config.model_type -> adapter class."""

_DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}
ATTENTION_CHOICES = ("auto", "sdpa", "flash_attention_2", "eager")


def supported_families() -> str:
    return ", ".join(f"{key} ({cls.description})" for key, cls in FAMILY_ADAPTERS.items())


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
    if attn not in ATTENTION_CHOICES:
        raise FocusModelError(f"attention {attn!r} is not one of {', '.join(ATTENTION_CHOICES)}")
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


def load_mllm(
    path_or_id: Any,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    attn_implementation: str = "auto",
) -> MLLM:
    """Load a supported multimodal LLM and wrap it in its family adapter.

    ``path_or_id``: a local Hugging Face model folder, a hub id
    (``llava-hf/llava-1.5-7b-hf``), or an in-memory ``(model, processor)`` pair.
    """
    if isinstance(path_or_id, (tuple, list)):
        if len(path_or_id) != 2:
            raise FocusModelError("pass the in-memory model as a (model, processor) pair")
        model, processor = path_or_id
        adapter_cls = _adapter_for(getattr(model.config, "model_type", None), repr(type(model).__name__))
        model.eval()
        return adapter_cls(model, processor)
    if not isinstance(path_or_id, (str, os.PathLike)):
        raise FocusModelError(
            f"load_mllm takes a model folder, a hub id or a (model, processor) pair, not {type(path_or_id).__name__}"
        )
    source = str(path_or_id).strip()
    if not source:
        raise FocusModelError("no model given: pass a model folder or a Hugging Face hub id")
    folder = Path(source).expanduser()
    is_local = folder.is_dir()
    if not is_local and (_looks_like_path(source) or folder.exists()):
        raise FocusModelError(
            f"model folder {source!r} does not exist (or is not a folder); put the whole Hugging Face model "
            "folder there (config.json, *.safetensors, tokenizer and processor files)"
        )
    if is_local and not (folder / "config.json").is_file():
        raise FocusModelError(
            f"{source!r} has no config.json, so it is not a Hugging Face model folder; copy the whole model "
            "folder (config.json, *.safetensors, tokenizer and processor files) into it"
        )

    from transformers import AutoConfig, AutoModelForImageTextToText

    location = str(folder) if is_local else source
    offline = is_local or _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE")
    config = _hf_call(AutoConfig.from_pretrained, location, offline, what="config")
    adapter_cls = _adapter_for(getattr(config, "model_type", None), location)

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    attention = resolve_attention(attn_implementation, torch_device, torch_dtype)
    log.info("loading %s (%s) on %s as %s with %s attention", location, config.model_type, torch_device, torch_dtype, attention)
    processor = _load_processor(adapter_cls, location, offline, config)
    model = _hf_call(
        AutoModelForImageTextToText.from_pretrained,
        location,
        offline,
        what="model weights",
        dtype=torch_dtype,
        attn_implementation=attention,
    )
    model.to(torch_device).eval()
    model.requires_grad_(False)
    return adapter_cls(model, processor, name=location)


def _load_processor(adapter_cls: type[MLLM], location: str, offline: bool, config: Any) -> Any:
    """The folder's processor; for families whose processor needs a video
    processor (and so torchvision), an image-only one built from its parts
    when the full one cannot be built."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    image_only = IMAGE_ONLY_PROCESSORS.get(adapter_cls)
    if image_only is None:
        return _hf_call(AutoProcessor.from_pretrained, location, offline, what="processor")
    try:
        processor = AutoProcessor.from_pretrained(location, local_files_only=True)
        if hasattr(processor, "image_processor"):
            return processor
    except Exception as exc:  # noqa: BLE001 - without torchvision the video processor fails to build
        log.info("building an image-only processor for %s (%s)", location, _first_line(exc))
    tokenizer = _hf_call(AutoTokenizer.from_pretrained, location, offline, what="tokenizer")
    image_processor = _hf_call(AutoImageProcessor.from_pretrained, location, offline, what="image processor")
    extra = {**_settings_from_model_config(config), **_processor_settings(location)}
    return image_only()(
        image_processor=image_processor, tokenizer=tokenizer,
        chat_template=extra.pop("chat_template", None) or getattr(tokenizer, "chat_template", None), **extra,
    )


def _settings_from_model_config(config: Any) -> dict[str, Any]:
    """Processor settings implied by the model config, for folders saved
    without a processor_config.json (LLaVA-OneVision needs them)."""
    vision = getattr(config, "vision_config", None)
    if getattr(config, "model_type", None) != "llava_onevision" or vision is None:
        return {}
    return {
        "num_image_tokens": (int(vision.image_size) // int(vision.patch_size)) ** 2,
        "vision_feature_select_strategy": getattr(config, "vision_feature_select_strategy", "full"),
        "vision_aspect_ratio": getattr(config, "vision_aspect_ratio", "anyres_max_9"),
    }


def _processor_settings(location: str) -> dict[str, Any]:
    """The processor's own settings saved in the folder: processor_config.json,
    and the chat template of an older chat_template.json."""
    import json

    def read(name: str) -> dict[str, Any]:
        path = Path(location) / name
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    skip = ("processor_class", "image_processor", "video_processor", "auto_map")
    settings = {k: v for k, v in read("processor_config.json").items() if k not in skip}
    template = read("chat_template.json").get("chat_template")
    if template and "chat_template" not in settings:
        settings["chat_template"] = template
    return settings


def _adapter_for(model_type: str | None, where: str) -> type[MLLM]:
    adapter = FAMILY_ADAPTERS.get(model_type or "")
    if adapter is None:
        raise UnsupportedModelError(
            f"{where} is a {model_type or 'model of unknown type'!r} model, which is not a multimodal LLM "
            f"FOCUS supports; supported families: {supported_families()}"
        )
    return adapter


def _hf_call(func: Any, location: str, offline: bool, *, what: str, **kwargs: Any) -> Any:
    """Call a transformers loader local-first; turn its errors into one clear message."""
    try:
        return func(location, local_files_only=True, **kwargs)
    except Exception as local_error:  # noqa: BLE001 - transformers raises many types here
        if offline:
            raise FocusModelError(
                f"could not load the {what} of {location!r} from local files: {_first_line(local_error)}. "
                "Check that the folder holds the complete model (HF_HUB_OFFLINE is honoured: nothing is downloaded)"
            ) from local_error
    try:
        return func(location, **kwargs)
    except Exception as remote_error:  # noqa: BLE001
        raise FocusModelError(
            f"could not load the {what} of {location!r} from the Hugging Face hub: {_first_line(remote_error)}. "
            "Without internet, download the model folder elsewhere and pass its path"
        ) from remote_error


def _looks_like_path(text: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a path."""
    return (
        text.startswith((".", "/", "~", "\\"))
        or "\\" in text
        or text.count("/") > 1
        or (len(text) > 1 and text[1] == ":")
    )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
