"""FOCUS: training-free visual cropping for fine-grained VQA, from the value
vectors in a multimodal LLM's KV cache. No ComfyUI import anywhere here.

The names below are imported on first use (PEP 562), so importing
``focus_engine`` or a light submodule of it (``config``, ``errors``) does not
import torch or transformers: the ComfyUI pack imports at start-up.
"""

from __future__ import annotations

import importlib
import importlib.util
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)  # a submodule, as an eager import would give
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
