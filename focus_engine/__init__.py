"""FOCUS: training-free visual cropping for fine-grained VQA, from the value
vectors in a multimodal LLM's KV cache. No ComfyUI import anywhere here.

The names below are imported on first use (PEP 562), so importing
``focus_engine`` or a light submodule of it (``config``, ``errors``) does not
import torch or transformers: the ComfyUI pack imports at start-up. Their
modules are imported by plain import statements (``_module``), not by
importlib: ComfyUI names the pack's package by its folder's path, and the
registry's scanner flags dynamic imports. Submodules are imported as usual
(``import focus_engine.rois``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from .config import FocusConfig, resolve_config
    from .cost import Cost
    from .errors import FocusConfigError, FocusError, FocusInputError, FocusModelError, UnsupportedModelError
    from .grid import GridGeometry, RelevanceMap
    from .mllm import MLLM, load_mllm
    from .methods.focus import FocusPipeline, FocusResult
    from .rois import ROI
    from .targets import Targets

__version__ = "0.1.0"

_EXPORTS = {
    "Cost": "cost",
    "FocusConfig": "config",
    "FocusConfigError": "errors",
    "FocusError": "errors",
    "FocusInputError": "errors",
    "FocusModelError": "errors",
    "FocusPipeline": "methods.focus",
    "FocusResult": "methods.focus",
    "GridGeometry": "grid",
    "MLLM": "mllm",
    "RelevanceMap": "grid",
    "ROI": "rois",
    "Targets": "targets",
    "UnsupportedModelError": "errors",
    "load_mllm": "mllm",
    "resolve_config": "config",
}

__all__ = [
    "Cost", "FocusConfig", "FocusConfigError", "FocusError", "FocusInputError", "FocusModelError", "FocusPipeline",
    "FocusResult", "GridGeometry", "MLLM", "ROI", "RelevanceMap", "Targets", "UnsupportedModelError", "load_mllm",
    "resolve_config", "__version__",
]
assert set(__all__) == {*_EXPORTS, "__version__"}


def _module(name: str) -> Any:
    """The submodule an export lives in, imported now."""
    if name == "config":
        from . import config as module
    elif name == "cost":
        from . import cost as module
    elif name == "errors":
        from . import errors as module
    elif name == "grid":
        from . import grid as module
    elif name == "mllm":
        from . import mllm as module
    elif name == "methods.focus":
        from .methods import focus as module
    elif name == "rois":
        from . import rois as module
    elif name == "targets":
        from . import targets as module
    else:
        raise KeyError(name)
    return module


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
