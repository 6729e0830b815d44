"""Method names -> factories: the one list of the ways of answering that
``focus bench run --methods``, ``focus run --method``, the nodes and Python
callers share.

- ``vanilla``: one answer on the whole image.
- ``focus``: FOCUS as configured (``FocusPipeline``).
- ``focus-full``: FOCUS with the paper's verification budget: the first
  ``n_steps`` ROIs of each target verified at once, then more until one says
  Yes (the default before ``verify_stop``; ``--preset paper`` has it too).
- ``focus-paper``: FOCUS with the paper's preset for the model's family
  (``presets.paper_settings``, on the run's ``preset_dataset``): the same
  run as ``focus`` with ``--preset paper``.
- ``random`` / ``keys``: the paper's ablations (a random map; pre-RoPE keys
  instead of values).
- ``no-ranking``: the map's first ROI, unverified (n_steps=1, no overrun).
- ``layers:A-B``: relevance summed over decoder layers ``[A, B)`` (0-based,
  half-open, like ``FocusConfig.layers``), e.g. ``layers:0-14``.
- ``focus-shared``: the maps of the targets the question names read from the
  answer prompt's own prefill (``map_prompt="question"``).
- ``focus-gated``: that, behind the gate: the plain answer stands when its
  confidence reaches ``GATED_THRESHOLD`` (calibrated on a seed no benchmark
  set uses, docs/benchmarks.md), else FOCUS searches; ``focus-gated:T`` uses
  threshold T.
- ``zoomeye``: the ZoomEye tree search.
- ``focus-find``: FOCUS's search without its answer (``FocusFind``): the
  regions, verified, for a user who wants only where the objects are (the
  FOCUS · Find node); its answer is empty, so a benchmark scores only its
  regions and cost.
Every FOCUS-family method except ``no-ranking`` takes the verification
budget ``n_steps`` (a benchmark sweeps it); vanilla and ZoomEye do not.
What a method fixes cannot be set by the user: ``setup.run_config`` says so
with the method to use instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..config import FocusConfig
from ..errors import FocusConfigError

METHOD_NAMES = ("vanilla", "focus", "focus-full", "focus-paper", "random", "no-ranking", "keys", "layers:A-B",
                "focus-shared", "focus-gated[:T]", "zoomeye", "focus-find")
GATED_THRESHOLD = 0.55
"""focus-gated's gate_threshold (FocusConfig.gate_threshold), calibrated as docs/benchmarks.md says."""


def _vanilla(mllm: Any, config: FocusConfig) -> Any:
    from .vanilla import Vanilla

    return Vanilla(mllm, config)


def _focus(mllm: Any, config: FocusConfig) -> Any:
    from .focus import FocusPipeline

    return FocusPipeline(mllm, config)


def _focus_find(mllm: Any, config: FocusConfig) -> Any:
    from .focus import FocusFind

    return FocusFind(mllm, config)


def _zoomeye(mllm: Any, config: FocusConfig) -> Any:
    from .zoomeye import ZoomEye

    return ZoomEye(mllm, config)


@dataclass(frozen=True)
class MethodSpec:
    """A named way of answering: a factory, the settings it fixes (config
    fields, and the preset for ``focus-paper``), and the method to use
    instead to set one of them."""

    name: str
    build: Callable[[Any, FocusConfig], Any]
    fixed: tuple[tuple[str, Any], ...] = ()
    sweeps_n_steps: bool = True
    preset: str | None = None
    """The preset this method is (``focus-paper``: ``paper``), else None:
    the run's own."""
    instead: str = "focus"
    """What the error for a contradicted fixed field recommends."""


def gated(threshold: float) -> tuple[tuple[str, Any], ...]:
    """The gate at ``threshold``: the search behind it reads its maps from the
    plain answer's prefill (``map_prompt="question"``), which the gate has
    already paid for."""
    return (("map_prompt", "question"), ("gate_threshold", float(threshold)))


FIXED = {
    spec.name: spec for spec in (
        MethodSpec("vanilla", _vanilla, sweeps_n_steps=False),
        MethodSpec("focus", _focus),
        MethodSpec("focus-full", _focus, (("verify_stop", None), ("overrun", True))),
        MethodSpec("focus-paper", _focus, preset="paper"),
        MethodSpec("random", _focus, (("source", "random"),)),
        MethodSpec("keys", _focus, (("source", "keys"),)),
        MethodSpec("no-ranking", _focus, (("n_steps", 1), ("overrun", False)), sweeps_n_steps=False),
        MethodSpec("focus-shared", _focus, (("map_prompt", "question"),)),
        MethodSpec("focus-gated", _focus, gated(GATED_THRESHOLD)),
        MethodSpec("zoomeye", _zoomeye, sweeps_n_steps=False),
        # no answer, so no gate on one and no maps read from its prompt
        MethodSpec("focus-find", _focus_find, (("gate_threshold", None), ("map_prompt", "existence"))),
    )
}


def method_spec(name: str) -> MethodSpec:
    """The ``MethodSpec`` a method name stands for (see the module docstring)."""
    name = name.strip().lower()
    if name in FIXED:
        return FIXED[name]
    match = re.fullmatch(r"focus-gated:([0-9.]+)", name)
    if match:
        threshold = float(match.group(1))
        if not 0.0 <= threshold <= 1.0:
            raise FocusConfigError(f"method {name!r}: the gate threshold must be in [0, 1]")
        return MethodSpec(name, _focus, gated(threshold))
    match = re.fullmatch(r"layers:(\d+)-(\d+)", name)
    if match:
        start, end = int(match.group(1)), int(match.group(2))
        if start >= end:
            raise FocusConfigError(f"method {name!r}: the layer range needs start < end (half-open [start, end))")
        return MethodSpec(name, _focus, (("layers", (start, end)),))
    raise FocusConfigError(f"unknown method {name!r}; use {', '.join(METHOD_NAMES)}")


def method_specs(names: str | Sequence[str | MethodSpec]) -> list[MethodSpec]:
    """Specs from a comma-separated string or a list of names / specs;
    duplicates dropped."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    specs = [p if isinstance(p, MethodSpec) else method_spec(p) for p in parts if isinstance(p, MethodSpec) or p.strip()]
    if not specs:
        raise FocusConfigError("no methods given; use e.g. vanilla,focus")
    return list({s.name: s for s in specs}.values())
