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


class NonFiniteError(FocusModelError):
    """The model produced NaN or infinite values (a map or a confidence)."""


NON_FINITE_ADVICE = (
    "the model's numbers overflowed, most likely in fp16 (Qwen2-based language models such as LLaVA-OneVision "
    "and Qwen2.5-VL overflow there); load it in bf16 (precision=bf16, on a GPU that supports it) or fp32"
)


def check_finite(values: object, what: str) -> None:
    """Raise ``NonFiniteError`` naming ``what``, the likely cause and the fix,
    when ``values`` (an array, a tensor or a list of floats) holds NaN or inf."""
    import numpy as np

    array = values.detach().float().cpu().numpy() if hasattr(values, "detach") else np.asarray(values, dtype=float)
    if not np.isfinite(array).all():
        raise NonFiniteError(f"the {what} contains NaN or infinite values: {NON_FINITE_ADVICE}")
