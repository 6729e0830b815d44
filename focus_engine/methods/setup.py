"""One function builds a run's settings: ``run_config``.

A run's ``FocusConfig`` comes from five layers, applied in this order, each
one over the ones before it:

1. the ``FocusConfig`` defaults;
2. the model family's defaults (``mllm.family_defaults()``, the layer range
   for its depth): they fill the fields the later layers leave at ``None``;
3. the preset (``default``: nothing; ``paper``: ``presets.paper_settings``
   for the family and the dataset);
4. what the method fixes (``MethodSpec.fixed``: ``focus-full``'s
   verification, ``keys``'s source, ...; ``focus-paper`` fixes the preset);
5. what the user set: only the fields they set (a flag typed, a widget, a
   keyword), never a default standing in for them.

A user setting that contradicts a field the method fixes is an error that
names the method and the method to use instead; nothing is dropped
silently. The config it returns is resolved for the model and is the one
the method runs with and every record writes (``MethodResult.config``,
``results.json`` ``runs[].config``, the nodes' JSON).

The command line, the bench, the nodes and the Python API (``make_method``,
here) all call it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..config import FocusConfig, resolve_config
from ..errors import FocusConfigError
from ..presets import DATASETS, PRESETS, paper_settings
from .registry import MethodSpec, method_spec

SETTINGS = tuple(f.name for f in dataclasses.fields(FocusConfig) if f.name not in ("preset", "preset_dataset"))
"""The fields a user may set (the preset and its dataset are chosen by name)."""


def set_fields(config: FocusConfig | None) -> dict[str, Any]:
    """The fields of a caller's ``config`` that differ from the defaults: what
    a ``FocusConfig(...)`` handed over says was chosen (transformers reads a
    ``GenerationConfig`` the same way). Its preset and dataset count when
    they are not the defaults."""
    if config is None:
        return {}
    default = FocusConfig()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(default, f.name)}


def make_method(name: str | MethodSpec, mllm: Any, config: FocusConfig | None = None, budget: int | None = None,
                **settings: Any) -> Any:
    """The method ``name`` on ``mllm`` with the config ``run_config`` builds,
    named as asked (its results say ``keys`` or ``focus-gated:0.3``, not the
    class's name): ``make_method("zoomeye", mllm).run(image, question,
    options)``; ``make_method("focus", mllm, preset="paper", verify_stop=0.7)``."""
    spec = name if isinstance(name, MethodSpec) else method_spec(name)
    method = spec.build(mllm, run_config(mllm, spec, config, budget=budget, **settings))
    method.name = spec.name
    return method


def run_config(
    mllm: Any,
    method: str | MethodSpec = "focus",
    config: FocusConfig | None = None,
    *,
    budget: int | None = None,
    **settings: Any,
) -> FocusConfig:
    """The config ``method`` runs with on ``mllm``: the five layers of the
    module docstring, merged once (``merged_config``), then resolved for the
    model (layer 2, ``config.resolve_config``).

    ``config``: a caller's ``FocusConfig``; the fields it changed from the
    defaults count as set (``set_fields``). ``settings``: fields set by name,
    over ``config``'s, and ``preset`` / ``preset_dataset``. ``budget``: a
    benchmark's ``n_steps`` for this run, applied where the method sweeps the
    budget (``MethodSpec.sweeps_n_steps``) and ignored where it does not; an
    ``n_steps`` among ``settings`` is the user's, and is checked as theirs."""
    return resolve_config(mllm, merged_config(mllm.family, method, config, budget=budget, **settings))


def merged_config(
    family: str,
    method: str | MethodSpec = "focus",
    config: FocusConfig | None = None,
    *,
    budget: int | None = None,
    **settings: Any,
) -> FocusConfig:
    """Layers 1 and 3-5 for a model ``family`` (its name: no model needed),
    before the family's defaults fill the fields left at ``None``."""
    spec, user, preset, dataset = _checked(method, config, budget, settings)
    layers: dict[str, Any] = dict(paper_settings(family, dataset)) if preset == "paper" else {}
    layers.update(spec.fixed)
    layers.update(user)
    return FocusConfig(**layers, preset=preset, preset_dataset=dataset)


def check_settings(method: str | MethodSpec = "focus", config: FocusConfig | None = None, **settings: Any) -> None:
    """What can be said of the user's settings before a model is loaded: the
    method's name, the preset, unknown names, a contradiction with the
    method, each value on its own (``FocusConfig``'s checks); raises
    ``FocusConfigError``."""
    _, user, _, _ = _checked(method, config, None, settings)
    FocusConfig(**user)


def _checked(method: str | MethodSpec, config: FocusConfig | None, budget: int | None,
             settings: dict[str, Any]) -> tuple[MethodSpec, dict[str, Any], str, str]:
    """The method's spec, the user's settings, the preset and its dataset, checked."""
    spec = method if isinstance(method, MethodSpec) else method_spec(method)
    user = {**set_fields(config), **settings}
    if budget is not None and spec.sweeps_n_steps:
        user["n_steps"] = budget
    preset = _preset(spec, user.pop("preset", None))
    dataset = user.pop("preset_dataset", None) or "other"
    if dataset not in DATASETS:
        raise FocusConfigError(f"preset_dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    unknown = sorted(set(user) - set(SETTINGS))
    if unknown:
        raise FocusConfigError(f"unknown setting(s) {', '.join(unknown)}; FocusConfig has {', '.join(SETTINGS)}")
    _refuse_contradictions(spec, dict(spec.fixed), user)
    return spec, user, preset, dataset


def _preset(spec: MethodSpec, asked: str | None) -> str:
    if asked is not None and asked not in PRESETS:
        raise FocusConfigError(f"preset {asked!r}: use one of {', '.join(PRESETS)}")
    if spec.preset is not None and asked not in (None, spec.preset):
        raise FocusConfigError(f"method {spec.name} fixes preset={spec.preset!r}; for the {asked} preset use the "
                               f"method {spec.instead}")
    return spec.preset or asked or "default"


def _refuse_contradictions(spec: MethodSpec, fixed: Mapping[str, Any], user: Mapping[str, Any]) -> None:
    """A field the user set that the method fixes to another value: an error
    naming the method and the method that lets the user set it."""
    clashes = [name for name, value in user.items() if name in fixed and _normal(value) != _normal(fixed[name])]
    if clashes:
        what = ", ".join(f"{name}={fixed[name]!r}" for name in clashes)
        asked = ", ".join(f"{name}={user[name]!r}" for name in clashes)
        raise FocusConfigError(f"method {spec.name} fixes {what}, so {asked} cannot apply; to set "
                               f"{' and '.join(clashes)}, use the method {spec.instead}")


def _normal(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


__all__ = ["SETTINGS", "check_settings", "make_method", "merged_config", "run_config", "set_fields"]
