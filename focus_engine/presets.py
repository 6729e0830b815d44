"""Named presets: the project's own defaults, and the paper's settings per
model family and dataset (FOCUS, arXiv 2506.21710v2, Tab. 7 and §4.1).

``FocusConfig()`` is the ``default`` preset. ``paper_settings(family,
dataset)`` are the paper's fields (each family's part stated by its adapter,
``MLLM.paper_settings``), applied by ``methods.setup.run_config`` (layer 3
of 5; ``run_config(mllm, preset="paper")``): its anchors (k = 15 if
n_steps < 4 else 30; LLaVA-OneVision 30 always), anchor spacing (LLaVA-1.5:
2 on V*Bench, 3 elsewhere; OneVision 2), the largest box (LLaVA-1.5 5;
OneVision 9 on V*Bench, 5 elsewhere) and its boxes only (no extent boxes,
which are ours); its map (every target token in the product); its
verification (the question alone, the first ``n_steps`` ROIs at once, then
overrun until a Yes, with no cap but the target's proposals; the default
stops at the first sure crop); its answer view (regions far apart by their
distance, a counting question's regions on a canvas). Where the paper is
ambiguous or contradicts itself (negative similarities stay clamped), the
preset's choice and why are in docs/how_it_works.md ("The paper preset
against the paper's text").
The layers are the family's own: the paper's where it gives them
(LLaVA-1.5-7B 14..32, OneVision-7B Tab. 7's 21..28; §4.1's text says 14..28,
``layers=(14, 28)`` to take it). Families the paper does not configure
(Qwen2.5-VL and newer) keep the project's choices, without extent boxes.
"""

from __future__ import annotations

from typing import Any

from .config import FocusConfig
from .errors import FocusConfigError

PRESETS = ("default", "paper")
DATASETS = ("vstar", "hrbench", "mme", "other")
"""What the paper tabulates by: V*Bench, HR-Bench, MME-RealWorld, anything else."""


def paper_settings(family: str, dataset: str = "other") -> dict[str, Any]:
    """The FocusConfig fields the paper sets for ``family`` on ``dataset``:
    its boxes only (no extent boxes), and what the family's adapter states
    (``MLLM.paper_settings``: anchors, spacing, ``s_max`` of Tab. 7)."""
    from .mllm.loader import FAMILY_ADAPTERS

    if dataset not in DATASETS:
        raise FocusConfigError(f"dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    if family not in FAMILY_ADAPTERS:
        raise FocusConfigError(f"family {family!r}: use one of {', '.join(FAMILY_ADAPTERS)}")
    common = {"extent_floor": None, "map_prompt": "existence", "gate_threshold": None, "answer_scoring": "generate",
              "target_reply": "reasoned", "verify_stop": None, "overrun": True, "max_overrun": None,
              "skip_stop_words": False, "verify_answer_hint": False,
              "far_apart_measure": "distance", "count_on_canvas": True}
    return {**common, **FAMILY_ADAPTERS[family].paper_settings(dataset)}

def describe_preset(config: FocusConfig, family: str) -> str:
    """One line: the preset, its dataset, and the fields it set."""
    if config.preset != "paper":
        return "default (the project's own settings; --preset paper for the paper's)"
    fields = paper_settings(family, config.preset_dataset)
    shown = ", ".join(f"{name}={getattr(config, name)!r}" for name in fields)
    return f"paper, for {family} on {config.preset_dataset}: {shown}"


__all__ = ["DATASETS", "PRESETS", "describe_preset", "paper_settings"]
