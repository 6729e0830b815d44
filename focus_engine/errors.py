"""Errors the engine raises on purpose.

Every error a user can trigger with bad input is a ``FocusError`` carrying a
message that says what was wrong and what to do; callers (CLI, ComfyUI nodes)
show the message as it is, without a traceback from deep inside transformers.
"""

from __future__ import annotations


class FocusError(Exception):
    """Base class of the errors FOCUS raises for the user to read."""


class FocusInputError(FocusError, ValueError):
    """An image, question, target or option the engine cannot use."""


class FocusModelError(FocusError, RuntimeError):
    """A model folder or hub id that cannot be loaded as a supported MLLM."""


class UnsupportedModelError(FocusModelError):
    """The model loads, but its family is not one FOCUS supports."""


class FocusConfigError(FocusError, ValueError):
    """A FocusConfig value outside its allowed range."""
