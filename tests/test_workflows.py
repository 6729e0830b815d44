"""The shipped workflows: node types exist, links and widget values are
consistent, UI and API twins describe the same graph, the files match their
generator, and the FOCUS part of every API workflow runs on a tiny model.
The real-server test (``COMFYUI_PATH``) lives in test_workflows_server.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tools import workflow_check as wc
from helpers import BOXES, image_batch

NAMES = ["focus_vqa_step_by_step", "focus_vqa_one_node", "focus_roi_edit", "focus_find_edit", "focus_roi_inpaint",
         "focus_sam2_inpaint", "focus_detailer"]
OTHER_PACKS = {"focus_sam2_inpaint": ["ComfyUI-segment-anything-2"], "focus_detailer": ["ComfyUI-Impact-Pack"]}
QUESTION = "Where is the red square?"  # what the planted test model can localise
OBJECTS = "red"  # FOCUS · Find's objects, in its words


@pytest.fixture(scope="module")
def specs(pack):
    return {**wc.load_core_specs(), **wc.load_other_pack_specs(), **wc.pack_specs(pack.NODE_CLASS_MAPPINGS)}


def load(name: str) -> tuple[dict, dict]:
    ui = json.loads((wc.WORKFLOWS / f"{name}.json").read_text())
    api = json.loads((wc.WORKFLOWS / "api" / f"{name}.json").read_text())
    return ui, api


def test_every_workflow_has_an_api_twin():
    assert sorted(name for name, _, _ in wc.workflow_pairs()) == sorted(NAMES)
    for _, ui, api in wc.workflow_pairs():
        assert api.is_file(), f"{ui.name} has no API twin in workflows/api/"


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_consistent(specs, name):
    ui, _ = load(name)
    assert wc.check_ui(ui, specs) == []
    types = {node["type"] for node in ui["nodes"]}
    assert types & wc.VIRTUAL_NODES, "each workflow explains itself in a note"
    assert any(t.startswith("Focus") for t in types)


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_is_valid_and_twins_agree(specs, name):
    ui, api = load(name)
    assert wc.check_api(api, specs) == []
    bare = {node_id: {"class_type": n["class_type"], "inputs": n["inputs"]} for node_id, n in api.items()}
    assert wc.ui_to_api(ui, specs) == bare


def test_core_nodes_used(specs):
    used = set()
    for name in NAMES:
        used |= {node["class_type"] for node in load(name)[1].values()}
    assert {"GrowMask", "FeatherMask", "ImageCompositeMasked", "ImageScaleBy"} <= used  # roi_edit: core only
    assert {"CheckpointLoaderSimple", "CLIPTextEncode", "VAEEncodeForInpaint", "KSampler", "VAEDecode",
            "SaveImage"} <= used
    for name in ("focus_roi_edit", "focus_find_edit"):  # no extra model
        assert not {node["class_type"] for node in load(name)[1].values()} & {
            "CheckpointLoaderSimple", "UNETLoader", "VAELoader"}


@pytest.mark.parametrize("name", NAMES)
def test_other_packs_a_workflow_needs(pack, name):
    """The SAM 2 and detailer workflows are checked against those packs'
    node definitions (tools/comfy_pack_nodes.json): without them their
    nodes are unknown; the other workflows need core nodes only."""
    ui, api = load(name)
    assert wc.other_packs_needed(ui) == wc.other_packs_needed(api) == OTHER_PACKS.get(name, [])
    core_only = {**wc.load_core_specs(), **wc.pack_specs(pack.NODE_CLASS_MAPPINGS)}
    unknown = [p for p in wc.check_ui(ui, core_only) if "unknown type" in p]
    assert bool(unknown) == (name in OTHER_PACKS)


def test_checker_finds_broken_workflows(specs):
    """The checks above can fail: each kind of damage is reported."""
    ui, api = load("focus_vqa_step_by_step")
    focus_node = next(n for n in ui["nodes"] if n["type"] == "FocusRelevanceMap")

    def damaged(change) -> list[str]:
        copy_ui = copy.deepcopy(ui)
        change(copy_ui, next(n for n in copy_ui["nodes"] if n["id"] == focus_node["id"]))
        return wc.check_ui(copy_ui, specs)

    assert any("widgets_values" in p for p in damaged(lambda w, n: n["widgets_values"].pop()))
    assert any("outside" in p for p in damaged(lambda w, n: n["widgets_values"].__setitem__(0, -1)))
    assert any("is not one of" in p for p in damaged(lambda w, n: n["widgets_values"].__setitem__(2, "attention")))
    assert any("unknown type" in p for p in damaged(lambda w, n: n.__setitem__("type", "FocusNoSuchNode")))
    assert any("not connected" in p or "does not end here" in p
               for p in damaged(lambda w, n: n["inputs"][0].__setitem__("link", None)))
    assert any("type" in p for p in damaged(lambda w, n: w["links"][0].__setitem__(5, "MASK")))
    broken_api = copy.deepcopy(api)
    next(n for n in broken_api.values() if n["class_type"] == "FocusAnswer")["inputs"]["rois"][1] = 1  # selected_mask, a MASK
    broken_api[next(iter(broken_api))]["inputs"]["bogus"] = 1
    problems = wc.check_api(broken_api, specs)
    assert any("bogus" in p for p in problems) and any("expects FOCUS_ROIS" in p for p in problems)


def test_files_match_their_generator(specs, pack):
    """Regenerating with tools/make_workflows.py gives the shipped files (so a
    changed node spec cannot leave stale workflows behind)."""
    from tools import make_workflows

    for name, build in make_workflows.WORKFLOWS.items():
        graph = build(specs)
        ui, api = load(name)
        assert graph.ui() == ui, f"workflows/{name}.json is stale: run python -m tools.make_workflows"
        assert graph.api() == api, f"workflows/api/{name}.json is stale: run python -m tools.make_workflows"


def run_focus_part(prompt: dict, pack, mllm, images) -> dict[str, dict]:
    """Executes the pack's nodes of an API prompt in dependency order (the model
    loader and LoadImage stand in for the tiny model and an image batch) and
    returns, for each other core node, the values it would receive."""
    outputs: dict[str, tuple] = {}
    received: dict[str, dict] = {}
    for node_id in wc.api_order(prompt):
        node = prompt[node_id]
        kind = node["class_type"]
        inputs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                value = outputs.get(value[0], (None,) * 8)[value[1]]
            inputs[name] = value
        if kind == "FocusLoadMLLM":
            outputs[node_id] = (mllm,)
        elif kind == "LoadImage":
            outputs[node_id] = (images, torch.zeros(images.shape[:3]))
        elif kind == "PrimitiveStringMultiline":
            outputs[node_id] = (QUESTION,)
        elif kind in pack.NODE_CLASS_MAPPINGS:
            if kind == "FocusFind":
                inputs["objects"] = OBJECTS
            cls = pack.NODE_CLASS_MAPPINGS[kind]
            outputs[node_id] = getattr(cls(), cls.FUNCTION)(**inputs)
        else:
            received[node_id] = {"class_type": kind, **inputs}
    return received


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_focus_part_runs(pack, pack_planted, specs, name, batch):
    _, api = load(name)
    images = image_batch(batch)
    received = run_focus_part(api, pack, pack_planted, images)
    assert received, "the FOCUS part feeds core nodes"
    for node_id, inputs in received.items():
        spec = specs[inputs["class_type"]]
        declared = {n: k for n, k, _ in wc.socket_inputs(spec)} | {n: k for n, k, _ in wc.widget_inputs(spec)}
        for name_in, value in inputs.items():
            if name_in == "class_type" or value is None:
                continue
            kind = declared[name_in]
            if kind == "MASK":
                assert tuple(value.shape) == (batch, 700, 1200) and value.dtype == torch.float32
                assert 0.0 <= float(value.min()) and float(value.max()) <= 1.0
            elif kind == "IMAGE" and isinstance(value, torch.Tensor):
                assert value.ndim == 4 and value.shape[-1] == 3 and float(value.max()) <= 1.0
            elif kind == "*" and isinstance(value, str) and value.startswith("["):
                assert len(json.loads(value)) == batch  # boxes JSON: one entry per image
            elif kind == "BBOX":  # as Sam2Segmentation reads it with individual_objects: one box an entry
                boxes = torch.tensor(value)
                assert boxes.ndim == 2 and boxes.shape[1] == 4 and boxes.shape[0] >= batch
                for i in range(batch):
                    x0, y0, x1, y1 = BOXES[i]
                    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                    assert any(b[0] <= cx < b[2] and b[1] <= cy < b[3] for b in value)
            elif kind == "SEGS":  # Impact Pack's ((height, width), [SEG]) of the first image
                (height, width), items = value
                assert (height, width) == (700, 1200) and items
                x0, y0, x1, y1 = BOXES[0]
                assert any(s.bbox[0] <= (x0 + x1) / 2 < s.bbox[2] for s in items)
                assert all(s.cropped_image.shape[1:3] == s.cropped_mask.shape for s in items)
    masks = [v for inputs in received.values() for k, v in inputs.items()
             if k in ("mask",) and isinstance(v, torch.Tensor)]
    for mask in masks:  # the region FOCUS hands to the editing nodes covers each image's red square
        for i in range(batch):
            x0, y0, x1, y1 = BOXES[i]
            assert float(mask[i, (y0 + y1) // 2, (x0 + x1) // 2]) > 0.5


def test_workflows_parse_as_the_frontend_needs():
    for _, ui_path, api_path in wc.workflow_pairs():
        ui = json.loads(ui_path.read_text())
        assert ui["version"] == 0.4 and isinstance(ui["links"], list)
        for node in ui["nodes"]:
            assert len(node["pos"]) == 2 and len(node["size"]) == 2
        assert all("_meta" in n for n in json.loads(api_path.read_text()).values())
