"""The shipped workflows' layout and how ComfyUI's real frontend shows them.

Everywhere: the saved layout, each node at least as tall as the frontend
draws it in either renderer (``tools.make_workflows.drawn_height``), no two
nodes overlapping. With ``COMFYUI_PATH`` (and ``COMFYUI_PYTHON``, whose
environment has aiohttp) and a Chromium on PATH (Debian's ``chromium``): each
workflow loaded in the real frontend served by a real server, in headless
Chromium (``tools/browser_check.py``), in the classic renderer and in the Vue
one ("Nodes 2.0", frontends 1.41 and later): every node drawn with its type
known and its widgets shown, no two overlapping, no error dialog or page
error; the workflows that run on the demo model alone are also run, and
every preview then shows its result, still without overlaps.

``COMFYUI_FRONTEND_ROOTS`` (folders separated by ``os.pathsep``: the
``static`` folder of a ``comfyui-frontend-package``) adds frontends beside
the server's own (``--front-end-root``). ``COMFYUI_CUSTOM_NODES``, a folder of
other packs (Impact Pack, ComfyUI-segment-anything-2), installs them beside
this one: their nodes must then be known too. With Impact Pack 7.x, its
``Comfy.impact.comboBoolMigration`` extension is turned off as
docs/comfyui.md tells users to; a test shows what it breaks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from helpers import comfyui_server
from tools import browser_check as bc
from tools import workflow_check as wc
from tools.make_workflows import NODE_HEIGHTS, TITLE_HEIGHT, drawn_height, load_pack_mappings, min_height

COMFYUI = os.environ.get("COMFYUI_PATH", "")
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
FRONTEND_ROOTS = [root for root in os.environ.get("COMFYUI_FRONTEND_ROOTS", "").split(os.pathsep) if root]
OTHER_PACKS = os.environ.get("COMFYUI_CUSTOM_NODES", "")
UI_WORKFLOWS = sorted(wc.WORKFLOWS.glob("*.json"))
FRONTENDS = [None, *FRONTEND_ROOTS]
"""None: the frontend the server ships with."""
FIRST_DEFAULT_VUE = (1, 41)
"""Nodes 2.0 as users get it (on by default on new Desktop and Cloud installs);
before 1.41 the Vue nodes were an experiment behind a hidden setting."""


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
        assert node["size"][1] >= drawn_height(specs.get(node["type"]), node["type"]), (path.stem, node["type"])
        assert node["size"][1] >= min_height(specs.get(node["type"]), node["type"])
    assert bc.overlaps(saved_boxes(workflow)) == []


def test_min_height_follows_sockets_and_widgets():
    """The classic renderer's rule (``LGraphNode.computeSize``) against the
    heights measured in the real frontend (``tools/node_heights.json``), for
    every node type whose content does not grow with a picture or a text
    after a run."""
    specs = {**wc.load_core_specs(), **wc.load_other_pack_specs(), **wc.pack_specs(load_pack_mappings())}
    measured = json.loads(NODE_HEIGHTS.read_text())["classic"]
    grows = {"LoadImage", "PreviewImage", "SaveImage", "PreviewAny"}
    checked = {kind: height - TITLE_HEIGHT for kind, height in measured.items() if kind not in grows}
    assert len(checked) >= 20 and {"FocusVQA", "FocusProposeROIs", "FocusRankROIs", "KSampler"} <= set(checked)
    assert {kind: min_height(specs.get(kind), kind) for kind in checked} == checked
    assert all(measured[kind] - TITLE_HEIGHT >= min_height(specs[kind], kind) for kind in grows)



def test_the_workflows_run_on_the_demo_model_alone_are_the_ones_without_checkpoints_or_other_packs():
    for path in UI_WORKFLOWS:
        workflow = json.loads(path.read_text())
        needs_more = wc.other_packs_needed(workflow) or any(n["type"] == "CheckpointLoaderSimple"
                                                            for n in workflow["nodes"])
        assert (path.stem in bc.DEMO_RUNNABLE) == (not needs_more), path.stem


# ---------------------------------------------------------------- the real frontend

def _browser_skip_reason() -> str | None:
    if not COMFYUI:
        return "set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON to its python) to run this"
    if bc.find_chromium() is None:
        return f"no Chromium on PATH (looked for {', '.join(bc.BROWSERS)}; Debian: apt-get install chromium)"
    if subprocess.run([PYTHON, "-c", "import aiohttp"], capture_output=True).returncode:
        return f"{PYTHON} has no aiohttp (ComfyUI's requirements have it)"
    return None


class Served:
    """One server with one frontend: its URL, the specs it serves, and its
    extensions (Impact Pack's toggle extension among them or not)."""

    def __init__(self, url: str) -> None:
        self.url = url
        with urllib.request.urlopen(url + "/object_info", timeout=60) as response:
            self.specs = json.loads(response.read())
        with urllib.request.urlopen(url + "/extensions", timeout=60) as response:
            self.impact_toggles = any("comboBoolMigration" in e for e in json.loads(response.read()))

    def check(self, *flags: str, workflows: list[Path] | None = None, disable_impact: bool = True) -> dict:
        """``tools.browser_check`` against this server: what it drew, as JSON."""
        if self.impact_toggles:  # the setting is stored on the server: say it each time
            flags += (f"--disable-extension={bc.IMPACT_TOGGLE_EXTENSION}",) if disable_impact else ("--all-extensions",)
        flags += tuple(f"--workflow={path}" for path in workflows or [])
        done = subprocess.run([PYTHON, "-m", "tools.browser_check", self.url, "--json", *flags], cwd=wc.ROOT,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """``servers(i)``: a real ComfyUI serving ``FRONTENDS[i]``, started on
    first use, each with its own base directory: this pack and the other
    packs linked in, the demo model in models/LLM/focus-demo, the demo scene
    in input/."""
    reason = _browser_skip_reason()
    if reason:
        pytest.skip(reason)
    from PIL import Image

    from focus_engine.demo import EMBEDDED_MODEL_DIR, demo_item

    started: dict[int, Served] = {}
    with contextlib.ExitStack() as stack:
        def serve(index: int) -> Served:
            if index not in started:
                base = tmp_path_factory.mktemp(f"comfy_frontend{index}")
                nodes = base / "custom_nodes"
                nodes.mkdir()
                os.symlink(wc.ROOT, nodes / "ComfyUI-FOCUS", target_is_directory=True)
                for pack in sorted(Path(OTHER_PACKS).iterdir()) if OTHER_PACKS else []:
                    if pack.is_dir() and pack.name != "ComfyUI-FOCUS":
                        os.symlink(pack, nodes / pack.name, target_is_directory=True)
                shutil.copytree(EMBEDDED_MODEL_DIR, base / "models" / "LLM" / "focus-demo")
                (base / "input").mkdir()
                demo_item().image.save(base / "input" / "focus_demo_scene.png")
                Image.new("RGB", (64, 64), "grey").save(base / "input" / "focus_example.png")
                root = FRONTENDS[index]
                url, _, _ = stack.enter_context(comfyui_server(COMFYUI, base, ("--front-end-root", root) if root else ()))
                started[index] = Served(url)
            return started[index]

        yield serve


def version(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in (text or "0").split(".")[:3])


def expected_widgets(spec: dict) -> set[str]:
    return {name for name, kind, options in wc.widget_inputs(spec)}


CASES = [(index, renderer) for index in range(len(FRONTENDS)) for renderer in ("classic", "vue")]


@pytest.mark.parametrize("frontend, renderer", CASES,
                         ids=[f"{'bundled' if FRONTENDS[i] is None else f'root{i}'}-{r}" for i, r in CASES])
def test_the_workflows_in_the_real_frontend(servers, frontend, renderer):
    """Each workflow loaded as a user drops it in: every node drawn, its type
    known (other packs' nodes: where those packs are installed), its widgets
    shown, at least as tall as saved, no two overlapping, no error dialog or
    page error; the demo-model ones run, their previews filled, still clean."""
    served = servers(frontend)
    drawn = served.check("--run", *(("--vue",) if renderer == "vue" else ()))
    if renderer == "vue" and version(drawn["frontend"]) < FIRST_DEFAULT_VUE:
        pytest.skip(f"frontend {drawn['frontend']}: its Vue nodes are the pre-1.41 experiment (docs/comfyui.md)")
    assert sorted(k for k in drawn if k != "frontend") == [p.stem for p in UI_WORKFLOWS]
    for path in UI_WORKFLOWS:
        # ids as text: frontend 1.58 gives them as strings, 1.27 as numbers
        page, saved = drawn[path.stem], {str(n["id"]): n for n in json.loads(path.read_text())["nodes"]}
        where = f"{path.stem} ({drawn['frontend']}, {renderer})"
        nodes = page["nodes"]
        assert sorted(str(n["id"]) for n in nodes) == sorted(saved), where  # every node drawn
        assert {n["renderer"] for n in nodes} == {renderer}, where
        missing = {n["type"] for n in nodes if n["type"] not in served.specs and n["type"] not in wc.VIRTUAL_NODES}
        assert {n["type"] for n in nodes if not n["known"]} == missing, where
        if OTHER_PACKS:
            assert missing == set(), where  # the packs the workflows feed are installed: nothing is red
        else:
            other = {kind for pack in wc.other_packs_needed(json.loads(path.read_text())) for kind in
                     json.loads(wc.OTHER_PACK_SPECS.read_text())["packs"][pack]["nodes"]}
            assert missing <= other, where  # only another pack's nodes can be missing
        for node in nodes:
            assert node["box"][3] >= saved[str(node["id"])]["size"][1] + TITLE_HEIGHT - 1, (where, node["title"])
            if node["type"] in served.specs:  # every widget shown but those a link feeds (drawn as inputs)
                linked = {i["name"] for i in saved[str(node["id"])]["inputs"] if i.get("widget") and i.get("link")}
                assert expected_widgets(served.specs[node["type"]]) - linked <= set(node["widgets"]), (where, node)
        assert bc.overlaps(nodes) == [], where
        # without the other packs, the frontend's own "nodes are missing" dialog, naming them, is expected
        dialogs = [d for d in page["dialogs"] if not (missing and "Missing" in d and all(m in d for m in missing))]
        assert dialogs == [] and bc.unexplained(page["errors"]) == [], where
        if path.stem in bc.DEMO_RUNNABLE:
            after = page["after_run"]
            assert after["previews"] and all(p["shown"] for p in after["previews"].values()), (where, after["previews"])
            assert bc.overlaps(after["nodes"]) == [], (where, "after the run")
            assert after["dialogs"] == [] and bc.unexplained(after["errors"]) == [], (where, "after the run")


TOGGLE_WORKFLOW = {
    "last_node_id": 1, "last_link_id": 0, "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4,
    "nodes": [{"id": 1, "type": "ImageCompositeMasked", "pos": [0, 0], "size": [320, 180], "flags": {}, "order": 0,
               "mode": 0, "inputs": [{"name": "destination", "type": "IMAGE", "link": None},
                                     {"name": "source", "type": "IMAGE", "link": None}],
               "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}], "properties": {},
               "widgets_values": [0, 0, False]}],
}
"""A core-only workflow: one core node with a toggle (resize_source)."""
BROKEN_BY_IMPACT = ((1, 19, 5), (1, 27, 10))
"""The frontends seen failing with Impact Pack 7.x's toggle extension: from
1.19.5 (widgets keep their value behind a class accessor, so the extension
replaces it with a property it then cannot delete) to 1.27.10 at least;
1.58.1 loads the same workflows cleanly."""


def test_impact_packs_toggle_extension_breaks_any_workflow_with_a_toggle(servers, tmp_path):
    """Impact Pack 7.x's, not ours: in the frontends it breaks, a core-only
    workflow with a toggle aborts loading the same way, and with the
    extension turned off (the docs' workaround) it loads."""
    served = servers(0)
    if not served.impact_toggles:
        pytest.skip("Impact Pack 7.x is not installed (COMFYUI_CUSTOM_NODES)")
    path = tmp_path / "core_toggle.json"
    path.write_text(json.dumps(TOGGLE_WORKFLOW))
    broken = served.check(workflows=[path], disable_impact=False)
    if not BROKEN_BY_IMPACT[0] <= version(broken["frontend"]) <= BROKEN_BY_IMPACT[1]:
        pytest.skip(f"frontend {broken['frontend']} is not one Impact's extension was seen to break")
    assert any("Loading aborted" in d for d in broken["core_toggle"]["dialogs"])
    assert any("Cannot delete property 'value'" in e and "comboBoolMigration" in e
               for e in broken["core_toggle"]["errors"])
    fixed = served.check(workflows=[path])
    assert fixed["core_toggle"]["dialogs"] == [] and bc.unexplained(fixed["core_toggle"]["errors"]) == []
    assert [n["known"] for n in fixed["core_toggle"]["nodes"]] == [True]
