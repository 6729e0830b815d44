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
MODELS_DIR_OUTSIDE_COMFYUI: str | None = None
"""Where models are looked for when the pack runs without ComfyUI (tests,
scripts): a folder of model folders, set by the caller."""


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
        return [MODELS_DIR_OUTSIDE_COMFYUI] if MODELS_DIR_OUTSIDE_COMFYUI else []
    try:
        return list(fp.get_folder_paths(MODEL_FOLDER))
    except (KeyError, AttributeError):
        return []


def list_model_folders() -> list[str]:
    """Names of the model folders (a config.json, no unfinished download), sorted."""
    names = set()
    for root in model_roots():
        if os.path.isdir(root):
            for name in os.listdir(root):
                if find_model_folder(name) is not None:
                    names.add(name)
    return sorted(names)


def is_folder_name(name: object) -> bool:
    """Whether ``name`` can only mean a folder directly inside a models root:
    one path component, not ``.`` or ``..``, no separator, drive or NUL.
    Decided from the text alone, so the answer says nothing about the disk."""
    if not isinstance(name, str) or not name or name != name.strip() or name in (".", ".."):
        return False
    return not any(ch in name for ch in ("/", "\\", "\0", ":")) and not os.path.isabs(name)


def find_model_folder(name: str) -> str | None:
    """The full path of the complete model folder ``name``, or None.

    A workflow is untrusted input: only a folder name is taken, and only a
    folder that resolves (symlinks followed) to a direct child of one of the
    registered model roots. A path elsewhere on disk, ``../x`` or a symlink
    leading out of every root is never loaded from a widget."""
    from ..focus_engine.mllm.catalog import is_complete

    if not is_folder_name(name):
        return None
    roots = [os.path.realpath(root) for root in model_roots()]
    for root in roots:
        path = os.path.realpath(os.path.join(root, name))
        if os.path.dirname(path) in roots and is_complete(path):
            return path
    return None


def missing_models_message(what: str) -> str:
    """Where to put which model, for an empty or wrong model choice."""
    roots = ", ".join(model_roots()) or "ComfyUI/models/LLM"
    return (
        f"{what} in {roots}. Choose one of the known models in FOCUS · Load MLLM's list (llava-1.5-7b-hf, "
        "llava-onevision-qwen2-7b-ov-hf, Qwen2.5-VL-7B-Instruct, Qwen3-VL-8B-Instruct, Qwen3.5-4B, ...: downloaded "
        "there on first use), or put a "
        "whole Hugging Face model folder there, e.g. models/LLM/llava-1.5-7b-hf (llava-hf/llava-1.5-7b-hf), "
        "then refresh the node list (press R)"
    )


def not_a_folder_name_message(name: str) -> str:
    """For a model value that is a path, not a folder name. Worded the same
    whether or not anything exists there."""
    return missing_models_message(
        f"FOCUS · Load MLLM takes the name of a model folder, not a path ({name!r} is refused): it loads only "
        "folders directly"
    )


def make_room(bytes_needed: int, device: str) -> None:
    """Ask ComfyUI's memory manager to free ``bytes_needed`` (plus its
    working reserve) on the GPU the model is about to load onto."""
    if device == "cpu":
        return
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    target = mm.get_torch_device()
    if target.type == "cpu" or device not in ("auto", str(target), target.type):
        return
    mm.free_memory(bytes_needed + mm.minimum_inference_memory(), target)
    mm.soft_empty_cache()


def use_model(patcher: Any) -> None:
    """Tell ComfyUI's model manager that this model is in use: it is
    registered as loaded (so Unload Models and /free release it), and other
    models are freed first if its device needs the room."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    mm.load_models_gpu([patcher])


def forget_model(patcher: Any, keep_entry: bool = False) -> None:
    """Before the pack drops a model's weights: stop ComfyUI watching them
    (its finalizer on the weights takes the entry off its list when they
    die, which would clash with ComfyUI's own removal while it is unloading
    them), and take the entry off its list of loaded models unless ComfyUI
    is doing so itself (``keep_entry``)."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    ours = [entry for entry in mm.current_loaded_models if entry.model is patcher]
    for entry in ours:
        finalizer = getattr(entry, "model_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
    if not keep_entry:
        mm.current_loaded_models[:] = [entry for entry in mm.current_loaded_models if entry not in ours]


def empty_device_cache() -> None:
    """Give freed GPU memory back (ComfyUI's way when it is there)."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return
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

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        self.current = value
        self.total = total if total is not None else self.total


def progress_bar(total: int) -> Any:
    """comfy.utils.ProgressBar, or a silent stand-in outside ComfyUI."""
    try:
        from comfy.utils import ProgressBar  # type: ignore[import-not-found]
    except ImportError:
        return _NoProgress(total)
    return ProgressBar(total)
