"""The ways of answering, one module each: the plain answer
(``vanilla.Vanilla``), FOCUS (``focus.FocusPipeline``) and ZoomEye
(``zoomeye.ZoomEye``), on one run skeleton (``base.Method``) and one result
base (``base.MethodResult``); the registry of method names (``registry``). A
new way of answering is a module here and one registry line.

Names are imported on first use (the registry imports the methods lazily)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Method": "base", "MethodResult": "base", "Run": "base",
    "METHOD_NAMES": "registry", "MethodSpec": "registry", "make_method": "setup", "method_spec": "registry",
    "method_specs": "registry", "Vanilla": "vanilla", "FocusPipeline": "focus", "FocusResult": "focus",
    "ZoomEye": "zoomeye", "ZoomEyeResult": "zoomeye",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
