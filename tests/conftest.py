"""Shared fixtures: tiny planted-signal LLaVA models saved to temp folders and
loaded back through ``load_mllm(folder)``, the path a user's 7B model takes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from focus_engine.testing import (  # noqa: E402
    build_planted_llava, build_planted_llava_onevision, build_planted_qwen2_5_vl,
)


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LLaVA-1.5 geometry: 336 px, patch 14 -> 24x24 tokens."""
    return build_planted_llava(tmp_path_factory.mktemp("planted336"), seed=1)


@pytest.fixture(scope="session")
def planted_small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another geometry and seed: 224 px, patch 16 -> 14x14 tokens, 6 layers."""
    return build_planted_llava(
        tmp_path_factory.mktemp("planted224"), seed=5, image_side=224, patch=16, text_layers=6, heads=4, kv_heads=4
    )


@pytest.fixture(scope="session")
def random_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Undamped random weights (nothing planted): for exactness checks."""
    return build_planted_llava(tmp_path_factory.mktemp("random"), seed=3, damping=1.0, neutral_words=False)


@pytest.fixture(scope="session")
def random_onevision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LLaVA-OneVision with every layer at full strength (exactness checks)."""
    return build_planted_llava_onevision(tmp_path_factory.mktemp("random_ov"), seed=8, damping=1.0)


@pytest.fixture(scope="session")
def random_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2.5-VL with every layer at full strength (exactness checks)."""
    return build_planted_qwen2_5_vl(tmp_path_factory.mktemp("random_qwen"), seed=9, damping=1.0)


@pytest.fixture(scope="session")
def planted(planted_dir: Path):
    from focus_engine import load_mllm

    return load_mllm(str(planted_dir))


@pytest.fixture(scope="session")
def planted_small(planted_small_dir: Path):
    from focus_engine import load_mllm

    return load_mllm(str(planted_small_dir))


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Planted Qwen2.5-VL with an image-only processor (no torchvision)."""
    return build_planted_qwen2_5_vl(tmp_path_factory.mktemp("qwen"), seed=2)


@pytest.fixture(scope="session")
def qwen(qwen_dir: Path):
    from focus_engine import load_mllm

    return load_mllm(str(qwen_dir))


@pytest.fixture(scope="session")
def onevision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Planted LLaVA-OneVision: 112-px crops (8x8 patches), up to 3x3 crops."""
    return build_planted_llava_onevision(tmp_path_factory.mktemp("onevision"), seed=4)


@pytest.fixture(scope="session")
def onevision(onevision_dir: Path):
    from focus_engine import load_mllm

    return load_mllm(str(onevision_dir))


@pytest.fixture(scope="session")
def onevision_shrunk(tmp_path_factory: pytest.TempPathFactory):
    """anyres_max_4: grids of more than 4 crops are shrunk bilinearly by the model."""
    from focus_engine import load_mllm

    return load_mllm(str(build_planted_llava_onevision(tmp_path_factory.mktemp("ov_max4"), seed=6, max_crops=4)))


@pytest.fixture(scope="session")
def pack():
    """The node pack loaded the way ComfyUI loads it: the repository root as a
    package (here named comfyui_focus), its nodes importing the engine beside them."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "comfyui_focus", root / "__init__.py", submodule_search_locations=[str(root)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_focus"] = module
    spec.loader.exec_module(module)
    import comfyui_focus.focus_engine  # noqa: F401 - the engine as the nodes see it
    import comfyui_focus.nodes.helpers  # noqa: F401
    import comfyui_focus.nodes.stages  # noqa: F401

    return module


@pytest.fixture(scope="session")
def pack_planted(pack, planted_dir: Path):
    """The planted LLaVA loaded through the pack's own engine (same classes the nodes use)."""
    return pack.focus_engine.load_mllm(str(planted_dir))
