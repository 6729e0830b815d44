"""The model families the tests run on, one entry each.

conftest.py makes each entry's fixtures (its planted model, and its folders
planted and undamped) and test_adapter_contract.py runs the contract on every
entry, so a new family joins the tests by one ``Family`` here (with its
``build_planted_*`` in ``focus_engine.testing``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from focus_engine.testing import (
    build_planted_llava,
    build_planted_llava_onevision,
    build_planted_qwen2_5_vl,
    build_planted_qwen3_5,
    build_planted_qwen3_vl,
)


@dataclass(frozen=True)
class Family:
    name: str
    """The adapter's ``family`` (the config's model_type)."""
    planted: str
    """Fixture of the planted model, loaded from its folder (fixture ``<planted>_dir``)."""
    undamped: str
    """Fixture of a folder with every layer at full strength (exactness checks)."""
    build: Callable[..., Path]
    """The family's ``build_planted_*`` (folder, *, seed, damping, ...) -> folder."""
    planted_seed: int
    undamped_seed: int
    object_side: Callable[[tuple[int, int]], int]
    """The side (px) of an object its map should find in an image of that size."""
    image_only_processor: bool = False
    """Its full processor needs torchvision: it loads with an image-only one where that fails."""
    undamped_options: dict[str, Any] = field(default_factory=dict)
    k_norm: bool = False
    """Its attention layers normalise each head's keys (``k_norm``) before RoPE."""
    doc: str = ""

    @property
    def newer_than_the_floor(self) -> bool:
        """Its model classes are newer than the lowest transformers the project supports."""
        from focus_engine.mllm.base import MLLM
        from focus_engine.mllm.loader import FAMILY_ADAPTERS

        return tuple(FAMILY_ADAPTERS[self.name].min_transformers) > tuple(MLLM.min_transformers)

    @property
    def skip_reason(self) -> str | None:
        """Why this family's tests cannot run here: its adapter's
        ``min_transformers`` is newer than the installed transformers."""
        from focus_engine.mllm.hf_loading import installed_transformers, version_tuple
        from focus_engine.mllm.loader import FAMILY_ADAPTERS

        needed = FAMILY_ADAPTERS[self.name].min_transformers
        installed = installed_transformers()
        if version_tuple(installed) >= tuple(needed):
            return None
        return f"the {self.name} family needs transformers >= {needed[0]}.{needed[1]} (installed: {installed})"

    def build_folder(self, folder: str | os.PathLike, *, undamped: bool = False) -> Path:
        """The planted model (or the undamped one) saved in ``folder``."""
        if undamped:
            return self.build(folder, seed=self.undamped_seed, damping=1.0, **self.undamped_options)
        return self.build(folder, seed=self.planted_seed)


FAMILIES = (
    Family(
        "llava", planted="planted", undamped="random_dir", build=build_planted_llava, planted_seed=1,
        undamped_seed=3, undamped_options={"neutral_words": False},
        object_side=lambda size: int(max(size) / 24 * 1.4),  # about 1.4 cells of the 24x24 padded-square grid
        doc="LLaVA-1.5 geometry: 336 px, patch 14 -> 24x24 tokens.",
    ),
    Family(
        "llava_onevision", planted="onevision", undamped="random_onevision_dir", build=build_planted_llava_onevision,
        planted_seed=4, undamped_seed=8, image_only_processor=True,
        object_side=lambda size: 150,  # a few cells of the local-crop grid
        doc="Planted LLaVA-OneVision: 112-px crops (8x8 patches), up to 3x3 crops.",
    ),
    Family(
        "qwen2_5_vl", planted="qwen", undamped="random_qwen_dir", build=build_planted_qwen2_5_vl,
        planted_seed=2, undamped_seed=9, image_only_processor=True,
        object_side=lambda size: 140,  # a few 28-px merged patches of the resized image
        doc="Planted Qwen2.5-VL with an image-only processor (no torchvision).",
    ),
    Family(
        "qwen3_vl", planted="qwen3_vl", undamped="random_qwen3_vl_dir", build=build_planted_qwen3_vl,
        planted_seed=11, undamped_seed=12, image_only_processor=True, k_norm=True,
        object_side=lambda size: 160,  # a few 32-px merged patches of the resized image
        doc="Planted Qwen3-VL, DeepStack at full strength, image-only processor.",
    ),
    Family(
        "qwen3_5", planted="qwen3_5", undamped="random_qwen3_5_dir", build=build_planted_qwen3_5,
        planted_seed=13, undamped_seed=14, image_only_processor=True, k_norm=True,
        object_side=lambda size: 160,
        doc="Planted Qwen3.5: 8 layers, linear attention but layers 3 and 7, byte-level BPE tokenizer.",
    ),
)
FAMILY = {family.name: family for family in FAMILIES}
