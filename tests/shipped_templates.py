"""The chat templates the released Qwen checkpoints ship, read from two PyPI
packages that carry copies of them, never written for the tests:

- trl 1.16.0: ``trl/chat_templates/<name>.jinja``, "original" templates as
  the checkpoints ship them (its chat_templates/README.md names the
  checkpoints: ``qwen3_5_think`` by Qwen3.5-4B and larger, ``qwen3_5_nothink``
  by 2B and smaller, ``qwen3_6`` by Qwen3.6-27B and -35B-A3B, ``qwen3_vl``
  and ``qwen2_5_vl`` by the Instruct releases);
- xinference 4.1.0: ``xinference/model/llm/models/<model>.json`` holds each
  model family's ``chat_template``; Qwen3-VL Thinking's is only there. It
  has four of the five above (not the no-think Qwen3.5 one), byte-identical
  to trl's (checked by a test).

Both wheels are read as zip files, neither installed nor imported (trl
would pull in datasets and pyarrow, xinference a server). They are fetched
once with ``pip download`` (the package registry, as the install is) into
``$FOCUS_TEMPLATE_WHEELS`` or ``~/.cache/comfyui-focus/wheels`` and checked
against their sha256 before use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

WHEELS = {
    "trl": ("trl==1.16.0", "trl-1.16.0-py3-none-any.whl",
            "c4726e139dd40e1a41661511c639c8a68416782b2e3e8c0befebd77bb7ba0396"),
    "xinference": ("xinference==4.1.0", "xinference-4.1.0-py3-none-any.whl",
                   "40dd71d79e85a86f85c0d8b435fe51111fcf2c09227350d4a452229709528f2d"),
}
"""package -> (requirement, wheel file, sha256 of the wheel)."""

TRL_TEMPLATES = ("qwen2_5_vl", "qwen3_vl", "qwen3_5_think", "qwen3_5_nothink", "qwen3_6")
"""trl's names of the Qwen templates the tests use."""

XINFERENCE_MODELS = {
    "qwen2_5_vl": "qwen2.5-vl-instruct", "qwen3_vl": "Qwen3-VL-Instruct", "qwen3_vl_thinking": "Qwen3-VL-Thinking",
    "qwen3_5_think": "qwen3.5", "qwen3_6": "qwen3.6",
}
"""Our template name -> xinference's model file (one template per model family there)."""


def wheel_folder() -> Path:
    return Path(os.environ.get("FOCUS_TEMPLATE_WHEELS") or Path.home() / ".cache" / "comfyui-focus" / "wheels")


@functools.lru_cache(maxsize=None)
def wheel(package: str) -> Path:
    """The checked wheel of ``package``, downloaded on first use."""
    requirement, filename, sha256 = WHEELS[package]
    path = wheel_folder() / filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", str(path.parent), requirement],
            capture_output=True, text=True, timeout=600,
        )
        if done.returncode != 0 or not path.is_file():
            raise RuntimeError(
                f"the shipped chat templates come from the {requirement} wheel, which pip could not download into "
                f"{path.parent} ({done.stderr.strip()[-300:]}); put {filename} there (or set FOCUS_TEMPLATE_WHEELS "
                "to a folder holding it) and run the tests again"
            )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{path} is not the released {requirement} wheel (sha256 {digest}); delete it")
    return path


@functools.lru_cache(maxsize=None)
def trl_template(name: str) -> str:
    """trl's copy of a template (``TRL_TEMPLATES``)."""
    with zipfile.ZipFile(wheel("trl")) as archive:
        return archive.read(f"trl/chat_templates/{name}.jinja").decode("utf-8")


@functools.lru_cache(maxsize=None)
def xinference_template(name: str) -> str:
    """xinference's copy of a template (``XINFERENCE_MODELS``)."""
    with zipfile.ZipFile(wheel("xinference")) as archive:
        (family,) = json.loads(archive.read(f"xinference/model/llm/models/{XINFERENCE_MODELS[name]}.json"))
    return family["chat_template"]


def shipped_template(name: str) -> str:
    """A shipped template by our name: trl's where it has it, else xinference's."""
    return trl_template(name) if name in TRL_TEMPLATES else xinference_template(name)


THINKS_BY_DEFAULT = {
    "qwen2_5_vl": False, "qwen3_vl": False, "qwen3_vl_thinking": True,
    "qwen3_5_think": True, "qwen3_5_nothink": False, "qwen3_6": True,
}
"""Each template and whether its generation prompt opens a reasoning block when
the caller passes nothing about thinking."""

FAMILY_TEMPLATES = {
    "qwen2_5_vl": ("qwen2_5_vl",),
    "qwen3_vl": ("qwen3_vl", "qwen3_vl_thinking"),
    "qwen3_5": ("qwen3_5_think", "qwen3_5_nothink", "qwen3_6"),
}
"""Family -> the templates its released checkpoints ship (Qwen3.6 is a Qwen3.5 model)."""
