"""The BOUNDING_BOX outputs (issue 31, §1), checked against ComfyUI core's
own definition of the type.

Everywhere: against ``tools/comfy_core_box_nodes.json``, the key types of
``comfy_api.latest.io.BoundingBox.Type`` and the ``/object_info`` entries of
the core nodes that make and take boxes, read from a real ComfyUI 0.25.0.
With ``COMFYUI_PATH`` pointing to a ComfyUI that has the type (0.15 or later;
``COMFYUI_PYTHON`` its interpreter): the type read from that checkout's
``comfy_api``, and FOCUS · VQA and Propose ROIs wired into core's Draw BBoxes
and Crop By Bounding Boxes on a real server, the way a user wires them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import BOXES, comfyui_server, scene
from tools import workflow_check as wc

CORE = json.loads((wc.ROOT / "tools" / "comfy_core_box_nodes.json").read_text())
TYPES = {"int": int, "float": float, "str": str}
BOX_NODES = {"FocusVQA": "helpers", "FocusProposeROIs": "stages", "FocusRankROIs": "stages"}
OUTPUTS_BEFORE = {
    "FocusVQA": ("STRING", "MASK", "IMAGE", "STRING", "STRING", "BBOX", "SEGS"),
    "FocusProposeROIs": ("FOCUS_ROIS", "MASK", "STRING", "BBOX", "SEGS"),
    "FocusRankROIs": ("FOCUS_ROIS", "MASK", "IMAGE", "STRING", "BBOX", "SEGS"),
}
"""The outputs before BOUNDING_BOX came: saved workflows link outputs by index."""


def core_inputs() -> list[tuple[str, str, list]]:
    """Every (node, input, entry) of core that takes a box."""
    found = []
    for node, spec in CORE["nodes"].items():
        for section in spec["input"].values():
            found += [(node, name, entry) for name, entry in section.items() if entry[0] == CORE["io_type"]]
    return found


def check_core_box(box: dict, size: tuple[int, int]) -> None:
    """One box as core's BoundingBox: the TypedDict's keys with its types, a
    non-empty box inside the image; the detectors' optional score and label."""
    for key, kind in CORE["fields"].items():
        assert type(box[key]) is TYPES[kind], (key, box)
    assert set(box) - set(CORE["fields"]) <= {"score", "label"}
    assert box["width"] > 0 and box["height"] > 0 and box["x"] >= 0 and box["y"] >= 0
    assert box["x"] + box["width"] <= size[0] and box["y"] + box["height"] <= size[1]
    if "score" in box:
        assert type(box["score"]) is float and 0.0 <= box["score"] <= 1.0
    if "label" in box:
        assert isinstance(box["label"], str)


def test_the_box_outputs_come_last_and_connect_to_every_core_box_input(pack):
    inputs = core_inputs()
    assert {node for node, _, _ in inputs} >= {"SAM3_Detect", "DrawBBoxes", "CropByBBoxes"}
    for node_id, module in BOX_NODES.items():
        node = getattr(getattr(pack.nodes, module), node_id)
        assert node.RETURN_TYPES[:-1] == OUTPUTS_BEFORE[node_id]  # every old output keeps its index
        assert node.RETURN_TYPES[-1] == CORE["io_type"] and node.RETURN_NAMES[-1] == "bounding_boxes"
        # the frontend links an output to an input of the same type name
        assert all(entry[0] == node.RETURN_TYPES[-1] for _, _, entry in inputs)
    # forceInput: a socket, not a widget (ImageCropV2 draws its own crop widget and takes one box)
    sockets = {(node, name) for node, name, entry in inputs if entry[1].get("forceInput")}
    assert {("SAM3_Detect", "bboxes"), ("DrawBBoxes", "bboxes"), ("CropByBBoxes", "bboxes")} <= sockets
    # core's detectors hand a batch on as one list per image, not as ComfyUI output lists
    assert CORE["nodes"]["SAM3_Detect"]["output"][1] == CORE["io_type"]
    assert CORE["nodes"]["SAM3_Detect"]["output_is_list"] == [False, False]


def test_core_boxes_one_list_per_image_in_cores_format(pack):
    ROI = pack.focus_engine.rois.ROI
    core_boxes = pack.nodes.regions.core_boxes
    sizes = [(1200, 700), (640, 480), (300, 200)]
    per_image = [
        [ROI((10, 20, 110, 70), "red", np.float32(0.8), confidence=0.93), ROI((500, 300, 900, 700), "sign", 0.4)],
        [],  # the gate answered on the whole image
        [ROI((0, 0, 300, 200), "cat", 0.25, confidence=np.float64(0.5))],
    ]
    batch = core_boxes(per_image, sizes)
    assert len(batch) == len(sizes)
    for boxes, size in zip(batch, sizes):
        assert isinstance(boxes, list) and boxes
        for box in boxes:
            check_core_box(box, size)
    assert batch[0] == [{"x": 10, "y": 20, "width": 100, "height": 50, "score": pytest.approx(0.93), "label": "red"},
                        {"x": 500, "y": 300, "width": 400, "height": 400, "score": pytest.approx(0.4),
                         "label": "sign"}]
    assert batch[1] == [{"x": 0, "y": 0, "width": 640, "height": 480}]  # as BBOX: the whole image
    assert batch[2][0]["score"] == 0.5 and batch[2][0]["label"] == "cat"
    json.dumps(batch)  # plain values: a workflow's cache and the API can carry them


# ---------------------------------------------------------------- a real ComfyUI with the type

COMFYUI = os.environ.get("COMFYUI_PATH", "")
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)


def _core_has_boxes() -> str | None:
    if not COMFYUI:
        return "set COMFYUI_PATH to a ComfyUI checkout of 0.15 or later (and COMFYUI_PYTHON) to run this"
    api = Path(COMFYUI) / "comfy_api" / "latest" / "_io.py"
    if not api.is_file() or "BOUNDING_BOX" not in api.read_text():
        return f"the ComfyUI at {COMFYUI} has no BOUNDING_BOX type (core has it since 0.15)"
    return None


real_core = pytest.mark.skipif(_core_has_boxes() is not None, reason=_core_has_boxes() or "")


@real_core
def test_the_snapshot_is_cores_definition():
    code = ("import json, typing\nfrom comfy_api.latest import io\n"
            "print(json.dumps([io.BoundingBox.io_type, "
            "{k: v.__name__ for k, v in typing.get_type_hints(io.BoundingBox.Type).items()}]))")
    done = subprocess.run([PYTHON, "-c", code], cwd=COMFYUI, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    io_type, fields = json.loads(done.stdout.strip().splitlines()[-1])
    assert io_type == CORE["io_type"] and fields == CORE["fields"]


@pytest.fixture(scope="module")
def core_server(tmp_path_factory, planted_dir):
    reason = _core_has_boxes()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("comfy_core_boxes")
    (base / "custom_nodes").mkdir()
    os.symlink(wc.ROOT, base / "custom_nodes" / "ComfyUI-FOCUS", target_is_directory=True)
    shutil.copytree(planted_dir, base / "models" / "LLM" / "tiny-llava")
    (base / "input").mkdir()
    scene((1200, 700), BOXES[0]).save(base / "input" / "scene.png")
    with comfyui_server(COMFYUI, base) as (url, _, _):
        yield url, base


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _run(url: str, prompt: dict) -> dict:
    import time

    request = urllib.request.Request(url + "/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            prompt_id = json.loads(response.read())["prompt_id"]
    except urllib.error.HTTPError as error:
        raise AssertionError(f"the server refused the prompt: {error.read().decode()[:3000]}") from None
    deadline = time.time() + 600
    while time.time() < deadline:
        entry = _get(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
            return entry
        time.sleep(0.5)
    raise AssertionError("the prompt did not finish in 600 s")


@real_core
def test_a_user_wires_the_focus_box_into_core_nodes(core_server):
    """FOCUS · VQA's box into Draw BBoxes and Crop By Bounding Boxes, Propose
    ROIs' boxes into Draw BBoxes: the server accepts the links and runs them;
    the drawn box sits on the red square, the crop is the square."""
    url, base = core_server
    info = _get(url + "/object_info")
    assert info["FocusVQA"]["output"][-1] == info["DrawBBoxes"]["input"]["required"]["bboxes"][0]
    prompt = {
        "1": {"class_type": "FocusLoadMLLM", "inputs": {"model": "tiny-llava"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "scene.png"}},
        "3": {"class_type": "FocusVQA", "inputs": {"mllm": ["1", 0], "image": ["2", 0],
                                                   "question": "Where is the red square?", "n_steps": 2,
                                                   "targets_override": "red"}},
        "4": {"class_type": "DrawBBoxes", "inputs": {"image": ["2", 0], "bboxes": ["3", 7]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "drawn"}},
        "6": {"class_type": "CropByBBoxes", "inputs": {"image": ["2", 0], "bboxes": ["3", 7], "output_width": 64,
                                                       "output_height": 64, "padding": 0, "keep_aspect": "stretch"}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "crop"}},
        "8": {"class_type": "FocusExtractTargets", "inputs": {"mllm": ["1", 0], "question": "Where is the red square?",
                                                              "targets_override": "red"}},
        "9": {"class_type": "FocusRelevanceMap", "inputs": {"mllm": ["1", 0], "image": ["2", 0], "targets": ["8", 0]}},
        "10": {"class_type": "FocusProposeROIs", "inputs": {"relevance": ["9", 0]}},
        "11": {"class_type": "DrawBBoxes", "inputs": {"image": ["2", 0], "bboxes": ["10", 5]}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "proposals"}},
    }
    for node in prompt.values():  # FOCUS widgets at their defaults, as a user drops the node in
        if node["class_type"].startswith("Focus"):
            for name, entry in info[node["class_type"]]["input"]["required"].items():
                options = entry[1] if len(entry) > 1 else {}
                if name not in node["inputs"] and "default" in options:
                    node["inputs"][name] = options["default"]
                elif name not in node["inputs"] and isinstance(entry[0], list):
                    node["inputs"][name] = entry[0][0]
    entry = _run(url, prompt)
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert entry["status"]["status_str"] == "success", [(e["node_type"], e["exception_message"]) for e in errors]
    outputs = base / "output"
    original = np.asarray(Image.open(base / "input" / "scene.png").convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(next(outputs.glob("drawn_*.png"))).convert("RGB")).astype(int)
    changed = np.abs(drawn - original).sum(axis=2) > 30
    ys, xs = np.nonzero(changed)
    x0, y0, x1, y1 = BOXES[0]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    assert changed.any() and xs.min() <= cx <= xs.max() and ys.min() <= cy <= ys.max()  # a box around the square
    crop = np.asarray(Image.open(next(outputs.glob("crop_*.png"))).convert("RGB")).astype(int)
    assert crop.shape == (64, 64, 3)
    red = (crop[..., 0] > 150) & (crop[..., 1] < 100) & (crop[..., 2] < 100)
    assert red.mean() > 0.2  # the crop shows the red square
    assert next(outputs.glob("proposals_*.png"), None) is not None
