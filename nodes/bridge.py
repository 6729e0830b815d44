"""The one place the node pack touches ComfyUI's own modules.

Everything is imported lazily and has a fallback, so the pack (and its tests)
import without ComfyUI, and importing the pack starts no model or GPU work.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("ComfyUI-FOCUS")

MODEL_FOLDER = "LLM"
"""ComfyUI/models/LLM/<folder>: one whole Hugging Face model folder each."""


def _folder_paths() -> Any | None:
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return None
    return folder_paths


def register_model_folder() -> None:
    """Make ``models/LLM`` a ComfyUI model folder (idempotent)."""
    fp = _folder_paths()
    if fp is None:
        return
    path = os.path.join(fp.models_dir, MODEL_FOLDER)
    if path not in model_roots():
        fp.add_model_folder_path(MODEL_FOLDER, path)


def model_roots() -> list[str]:
    """The folders searched for models (``models/LLM`` and extra paths)."""
    fp = _folder_paths()
    if fp is None:
        env = os.environ.get("FOCUS_MODELS_DIR")
        return [env] if env else []
    try:
        return list(fp.get_folder_paths(MODEL_FOLDER))
    except (KeyError, AttributeError):
        return []


def list_model_folders() -> list[str]:
    """Names of the model folders (those holding a config.json), sorted."""
    names = set()
    for root in model_roots():
        if os.path.isdir(root):
            for name in os.listdir(root):
                if os.path.isfile(os.path.join(root, name, "config.json")):
                    names.add(name)
    return sorted(names)


def missing_models_message(what: str) -> str:
    """Where to put which model, for an empty or wrong model choice."""
    roots = ", ".join(model_roots()) or "ComfyUI/models/LLM"
    return (
        f"{what} in {roots}. Put a whole Hugging Face model folder there, e.g. models/LLM/llava-1.5-7b-hf "
        "(llava-hf/llava-1.5-7b-hf), models/LLM/llava-onevision-qwen2-7b-ov-hf or "
        "models/LLM/Qwen2.5-VL-7B-Instruct, then refresh the node list"
    )


def resolve_model_folder(name: str) -> str:
    """The full path of model folder ``name``, or a ValueError saying where to put it."""
    for root in model_roots():
        path = os.path.join(root, name)
        if os.path.isfile(os.path.join(path, "config.json")):
            return path
    raise ValueError(missing_models_message(f"model folder {name!r} was not found"))


def free_memory() -> None:
    """Ask ComfyUI's memory manager for room before loading a model."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    mm.unload_all_models()
    mm.soft_empty_cache()


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interruption if the user pressed Cancel."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


def interrupted() -> bool:
    """Whether the user pressed Cancel (polled inside generation)."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return False
    return bool(mm.processing_interrupted())


class _NoProgress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.current = 0

    def update(self, value: int) -> None:
        self.current += value


def progress_bar(total: int) -> Any:
    """comfy.utils.ProgressBar, or a silent stand-in outside ComfyUI."""
    try:
        from comfy.utils import ProgressBar  # type: ignore[import-not-found]
    except ImportError:
        return _NoProgress(total)
    return ProgressBar(total)
