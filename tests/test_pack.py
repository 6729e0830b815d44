"""The ComfyUI entry point and the engine's independence from ComfyUI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pack_imports_without_comfyui_and_without_torch():
    """Loading the pack (as ComfyUI does, by folder) must not import torch or load a model."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('ComfyUI-FOCUS', {str(ROOT / '__init__.py')!r},"
        f" submodule_search_locations=[{str(ROOT)!r}])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        "assert isinstance(module.NODE_CLASS_MAPPINGS, dict)\n"
        "assert isinstance(module.NODE_DISPLAY_NAME_MAPPINGS, dict)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.split() == ["False", "False"]


def test_engine_never_imports_comfy():
    pattern = re.compile(r"^\s*(from|import)\s+(comfy|folder_paths|server|nodes)\b", re.MULTILINE)
    offenders = [p for p in (ROOT / "focus_engine").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
