"""The pack in a real ComfyUI server: /object_info, every API workflow through
/prompt, node errors for bad input. Runs only when ``COMFYUI_PATH`` points to a
ComfyUI checkout; ``COMFYUI_PYTHON`` names the interpreter that has ComfyUI's
requirements (default: this one). The server gets its own base directory (the
pack linked into custom_nodes/, a tiny model in models/LLM/), so the checkout is
left untouched. The inpainting workflow also needs a checkpoint: a tiny
random-weight SD1.5 one is written by tools/make_tiny_sd_checkpoint.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tools import workflow_check as wc
from helpers import BOXES, scene

COMFYUI = os.environ.get("COMFYUI_PATH", "")
pytestmark = pytest.mark.skipif(
    not COMFYUI, reason="set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON to its python) to run this"
)
MODEL_FOLDER = "tiny-llava"
CHECKPOINT = "tiny-sd15.safetensors"
QUESTION = "Where is the red square?"


class Server:
    def __init__(self, url: str, base: Path, log: Path, process: subprocess.Popen) -> None:
        self.url, self.base, self.log, self.process = url, base, log, process

    def get(self, path: str) -> object:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post_prompt(self, prompt: dict) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + "/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            assert self.process.poll() is None, "the server died:\n" + self.log.read_text()[-3000:]
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict) -> dict:
        status, answer = self.post_prompt(prompt)
        assert status == 200, answer
        return self.wait(answer["prompt_id"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, planted_dir):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    os.symlink(wc.ROOT, base / "custom_nodes" / "ComfyUI-FOCUS", target_is_directory=True)
    shutil.copytree(planted_dir, base / "models" / "LLM" / MODEL_FOLDER)
    (base / "input").mkdir()
    scene((1200, 700), BOXES[0]).save(base / "input" / "focus_example.png")
    (base / "models" / "checkpoints").mkdir(parents=True)
    subprocess.run([sys.executable, str(wc.ROOT / "tools" / "make_tiny_sd_checkpoint.py"),
                    str(base / "models" / "checkpoints" / CHECKPOINT), "--dtype", "fp8", "--clip", "full",
                    "--clip-dtype", "fp8"], check=True)
    port = _free_port()
    log = base / "server.log"
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
             "--database-url", "sqlite:///:memory:"],
            cwd=COMFYUI, stdout=out, stderr=subprocess.STDOUT,
        )
    running = Server(f"http://127.0.0.1:{port}", base, log, process)
    try:
        deadline = time.time() + 300
        while True:
            assert process.poll() is None, "ComfyUI exited:\n" + log.read_text()[-3000:]
            try:
                running.get("/object_info/FocusVQA")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline, "ComfyUI did not start in 300 s:\n" + log.read_text()[-3000:]
                time.sleep(1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def prepared(name: str, **changes: str) -> dict:
    """An API workflow with the model, checkpoint and question set for the test
    server (as a user would pick their own)."""
    prompt = json.loads((wc.WORKFLOWS / "api" / f"{name}.json").read_text())
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "FocusLoadMLLM":
            inputs["model"] = MODEL_FOLDER
        elif node["class_type"] == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = CHECKPOINT
        elif node["class_type"] == "KSampler":
            inputs["steps"] = 1  # random weights: one step shows the graph runs, on a CPU
        elif node["class_type"] == "PrimitiveStringMultiline":
            inputs["value"] = changes.get("question", QUESTION)
    return prompt


def test_object_info_lists_every_node_with_tooltips(server, pack):
    info = server.get("/object_info")
    for node_id in pack.NODE_CLASS_MAPPINGS:
        entry = info[node_id]
        assert entry["category"] == "FOCUS" and entry["display_name"].startswith("FOCUS · ")
        assert entry["description"] and len(entry["output_tooltips"]) == len(entry["output"])
        for section in ("required", "optional"):
            for name, spec in entry["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert MODEL_FOLDER in info["FocusLoadMLLM"]["input"]["required"]["model"][0]


def test_core_snapshot_matches_the_server(server):
    """tools/comfy_core_nodes.json still describes this ComfyUI's core nodes."""
    info = server.get("/object_info")
    for kind, spec in wc.load_core_specs().items():
        live = info[kind]
        assert live["output"] == spec["output"], kind
        for section in ("required", "optional"):
            ours = spec["input"].get(section, {})
            theirs = live["input"].get(section, {})
            assert list(ours) == list(theirs), f"{kind} {section} inputs changed"
            for name in ours:
                assert wc.is_widget(theirs[name][0], theirs[name][1] if len(theirs[name]) > 1 else {}) == \
                    wc.is_widget(ours[name][0], ours[name][1] if len(ours[name]) > 1 else {}), f"{kind}.{name}"


def test_every_ui_workflow_resolves(server):
    info = server.get("/object_info")
    for _, ui_path, _ in wc.workflow_pairs():
        types = {n["type"] for n in json.loads(ui_path.read_text())["nodes"]} - wc.VIRTUAL_NODES
        assert types <= set(info), f"{ui_path.name}: {types - set(info)} unknown to the server"


@pytest.mark.parametrize("name", [name for name, _, _ in wc.workflow_pairs()])
def test_api_workflow_runs(server, name):
    entry = server.run(prepared(name))
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    assert images, "the workflow previews or saves images"
    texts = [text for output in entry["outputs"].values() for text in output.get("text", [])]
    if name != "focus_roi_edit" and name != "focus_roi_inpaint":
        assert texts, "the answer is shown"


def test_bad_input_is_a_node_error_and_the_server_keeps_serving(server):
    entry = server.run(prepared("focus_vqa_one_node", question="  "))
    assert entry["status"]["status_str"] == "error"
    messages = json.dumps(entry["status"]["messages"])
    assert "the question is empty" in messages
    broken = prepared("focus_vqa_one_node")
    next(n for n in broken.values() if n["class_type"] == "FocusLoadMLLM")["inputs"]["model"] = "no-such-model"
    status, answer = server.post_prompt(broken)
    assert status == 400 and answer["node_errors"]  # refused at validation, naming the node
    assert server.run(prepared("focus_vqa_one_node"))["status"]["status_str"] == "success"
    assert server.process.poll() is None
