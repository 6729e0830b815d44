"""The ways of answering, one module each: the plain answer
(``vanilla.Vanilla``), FOCUS (``focus.FocusPipeline``) and ZoomEye
(``zoomeye.ZoomEye``), on one run skeleton (``base.Method``) and one result
base (``base.MethodResult``); the registry of method names (``registry``). A
new way of answering is a module here and one registry line.

Names are imported on first use (the registry imports the methods lazily)."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Method": "base", "MethodResult": "base", "Run": "base",
    "METHOD_NAMES": "registry", "MethodSpec": "registry", "make_method": "setup", "method_spec": "registry",
    "method_specs": "registry", "Vanilla": "vanilla", "FocusPipeline": "focus", "FocusResult": "focus",
    "FocusFind": "focus", "ZoomEye": "zoomeye", "ZoomEyeResult": "zoomeye",
}
__all__ = sorted(_EXPORTS)


def _module(name: str) -> Any:
    """The module an export lives in, imported now (import statements, not
    importlib: see ``focus_engine/__init__.py``)."""
    if name == "base":
        from . import base as module
    elif name == "registry":
        from . import registry as module
    elif name == "setup":
        from . import setup as module
    elif name == "vanilla":
        from . import vanilla as module
    elif name == "focus":
        from . import focus as module
    elif name == "zoomeye":
        from . import zoomeye as module
    else:
        raise KeyError(name)
    return module


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_module(module), name)
