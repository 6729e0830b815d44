"""Shared fixtures: tiny planted-signal models saved to temp folders and
loaded back through ``load_mllm(folder)``, the path a user's 7B model takes.
Each family's fixtures come from its entry in ``families.py``: ``<planted>_dir`` (the
folder), ``<planted>`` (the loaded model) and ``<undamped>`` (a folder with
every layer at full strength): for LLaVA-1.5 ``planted_dir`` / ``planted`` /
``random_dir``, LLaVA-OneVision ``onevision*`` / ``random_onevision_dir``,
Qwen2.5-VL ``qwen*`` / ``random_qwen_dir``, Qwen3-VL ``qwen3_vl*`` /
``random_qwen3_vl_dir``, Qwen3.5 ``qwen3_5*`` / ``random_qwen3_5_dir``.
A family whose adapter needs a newer transformers than the installed one
is skipped with that reason (``Family.skip_reason``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from families import FAMILIES, Family  # noqa: E402
from focus_engine.testing import build_planted_llava, build_planted_llava_onevision  # noqa: E402


@pytest.fixture(params=[f.name for f in FAMILIES])
def family(request: pytest.FixtureRequest) -> str:
    """Each family's name in turn (a module may narrow it with its own ``family``)."""
    return request.param


def _folder_fixture(family: Family, *, undamped: bool) -> Any:
    name = family.undamped if undamped else f"{family.planted}_dir"

    def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
        if family.skip_reason:  # a family newer than the installed transformers (the lowest-version CI run)
            pytest.skip(family.skip_reason)
        return family.build_folder(tmp_path_factory.mktemp(name), undamped=undamped)

    folder.__doc__ = f"{family.name}, every layer at full strength (exactness checks)." if undamped else family.doc
    return pytest.fixture(scope="session", name=name)(folder)


def _model_fixture(family: Family) -> Any:
    def model(request: pytest.FixtureRequest):
        from focus_engine import load_mllm

        return load_mllm(str(request.getfixturevalue(f"{family.planted}_dir")))

    model.__doc__ = f"The planted {family.name} loaded from its folder."
    return pytest.fixture(scope="session", name=family.planted)(model)


for _family in FAMILIES:  # per family: <planted>_dir, <planted> and <undamped> (tests/families.py)
    globals()[f"{_family.planted}_dir"] = _folder_fixture(_family, undamped=False)
    globals()[_family.planted] = _model_fixture(_family)
    globals()[_family.undamped] = _folder_fixture(_family, undamped=True)


@pytest.fixture(scope="session")
def planted_small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another geometry and seed: 224 px, patch 16 -> 14x14 tokens, 6 layers."""
    return build_planted_llava(
        tmp_path_factory.mktemp("planted224"), seed=5, image_side=224, patch=16, text_layers=6, heads=4, kv_heads=4
    )


@pytest.fixture(scope="session")
def planted_small(planted_small_dir: Path):
    from focus_engine import load_mllm

    return load_mllm(str(planted_small_dir))


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
    import pkgutil

    import comfyui_focus.focus_engine  # the engine as the nodes see it
    import comfyui_focus.nodes.helpers  # noqa: F401
    import comfyui_focus.nodes.stages  # noqa: F401

    # every engine module imported, so tests reach them as attributes (pack.focus_engine.rois.ROI)
    for found in pkgutil.walk_packages(comfyui_focus.focus_engine.__path__, "comfyui_focus.focus_engine."):
        importlib.import_module(found.name)

    return module


@pytest.fixture(scope="session")
def pack_planted(pack, planted_dir: Path):
    """The planted LLaVA loaded through the pack's own engine (same classes the nodes use)."""
    return pack.focus_engine.load_mllm(str(planted_dir))
