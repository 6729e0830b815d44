"""The shipped workflows' layout: no two nodes overlap.

Everywhere: the saved layout, with each node at least as tall as ComfyUI's
frontend draws it (``tools.make_workflows.min_height``). With ``COMFYUI_PATH``
(and ``COMFYUI_PYTHON``, whose environment has aiohttp) and a Chromium on PATH
(Debian's ``chromium`` package): each workflow loaded in ComfyUI's real
frontend, served by a real server, in headless Chromium
(``tools/browser_check.py``), every node's drawn box read from the page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import comfyui_server
from tools import browser_check as bc
from tools import workflow_check as wc
from tools.make_workflows import TITLE_HEIGHT, load_pack_mappings, min_height

COMFYUI = os.environ.get("COMFYUI_PATH", "")
UI_WORKFLOWS = sorted(wc.WORKFLOWS.glob("*.json"))


def saved_boxes(workflow: dict) -> list[dict]:
    return [{"id": n["id"], "title": n.get("title", n["type"]), "type": n["type"],
             "box": [n["pos"][0], n["pos"][1] - TITLE_HEIGHT, n["size"][0], n["size"][1] + TITLE_HEIGHT]}
            for n in workflow["nodes"]]


def test_overlaps_finds_only_intersecting_boxes():
    boxes = [{"id": 1, "title": "a", "box": [0, 0, 100, 100]}, {"id": 2, "title": "b", "box": [100, 0, 50, 50]},
             {"id": 3, "title": "c", "box": [50, 99, 10, 10]}, {"id": 4, "title": "d", "box": [0, 200, 10, 10]}]
    assert bc.overlaps(boxes) == [("a #1", "c #3")]  # b only touches a's edge


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_saved_layout_has_no_overlaps_at_the_drawn_sizes(path):
    specs = {**wc.load_core_specs(), **wc.load_other_pack_specs(), **wc.pack_specs(load_pack_mappings())}
    workflow = json.loads(path.read_text())
    for node in workflow["nodes"]:
        assert node["size"][1] >= min_height(specs.get(node["type"]), node["type"]), (path.stem, node["type"])
    assert bc.overlaps(saved_boxes(workflow)) == []


def test_min_height_follows_sockets_and_widgets():
    """The rule measured in ComfyUI's frontend 1.27.10 (``LGraphNode.computeSize``)."""
    specs = {**wc.load_core_specs(), **wc.pack_specs(load_pack_mappings())}
    measured = {"FocusVQA": 382, "FocusProposeROIs": 258, "FocusAnswer": 250, "FocusLoadMLLM": 178,
                "KSampler": 262, "LoadImage": 102, "MaskToImage": 26, "PreviewAny": 88, "CLIPTextEncode": 88}
    assert {kind: min_height(specs[kind], kind) for kind in measured} == measured
    assert min_height(None, "Note") == 88


def _browser_skip_reason() -> str | None:
    if not COMFYUI:
        return "set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON to its python) to run this"
    if bc.find_chromium() is None:
        return f"no Chromium on PATH (looked for {', '.join(bc.BROWSERS)}; Debian: apt-get install chromium)"
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import aiohttp"], capture_output=True).returncode:
        return f"{python} has no aiohttp (ComfyUI's requirements have it)"
    return None


@pytest.fixture(scope="module")
def frontend_url(tmp_path_factory):
    """A real ComfyUI server (its own base directory, the pack linked in)."""
    reason = _browser_skip_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("comfy_browser")
    (base / "custom_nodes").mkdir()
    os.symlink(wc.ROOT, base / "custom_nodes" / "ComfyUI-FOCUS", target_is_directory=True)
    with comfyui_server(COMFYUI, base) as (url, _, _):
        yield url


def test_no_two_nodes_overlap_in_the_real_frontend(frontend_url):
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    done = subprocess.run([python, "-m", "tools.browser_check", frontend_url, "--json"], cwd=wc.ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    drawn = json.loads(done.stdout)
    assert sorted(drawn) == [p.stem for p in UI_WORKFLOWS]
    for path in UI_WORKFLOWS:
        nodes = drawn[path.stem]
        saved = {n["id"]: n for n in json.loads(path.read_text())["nodes"]}
        assert sorted(n["id"] for n in nodes) == sorted(saved), path.stem  # every node drawn
        for node in nodes:  # drawn at least as tall as saved: the frontend only ever grows a node
            assert node["box"][3] >= saved[node["id"]]["size"][1] + TITLE_HEIGHT - 1, (path.stem, node)
        assert bc.overlaps(nodes) == [], path.stem
