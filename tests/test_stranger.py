"""A test that plays the stranger (issue 24): crafted workflows submitted to
the pack loaded the way ComfyUI loads it, through a small stand-in for
ComfyUI's prompt handling (its validation: the prompt check of
tools/workflow_check.py plus each node's VALIDATE_INPUTS; then execution in
order, an exception becoming the prompt's error). Each is refused or bounded
with a clear message, and the next good prompt still runs. The same cases go
to a real server in test_workflows_server.py (COMFYUI_PATH)."""

from __future__ import annotations

import inspect
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import stranger_cases as sc
from helpers import BOXES, scene
from test_nodes_load import comfy  # noqa: F401 - the stubbed ComfyUI modules (a fixture)
from tools import workflow_check as wc

MODEL = "tiny-llava"


@dataclass
class Outcome:
    status: str
    """``refused`` (validation), ``error`` (execution) or ``success``."""
    message: str
    seconds: float


class Stand_in:
    """What the server does with a prompt, for the pack's nodes."""

    def __init__(self, pack: Any, specs: dict[str, Any], images: dict[str, torch.Tensor]) -> None:
        self.pack, self.specs, self.images = pack, specs, images

    def validate(self, prompt: dict[str, Any]) -> list[str]:
        problems = wc.check_api(prompt, self.specs)
        for node in prompt.values():
            cls = self.pack.NODE_CLASS_MAPPINGS.get(node["class_type"])
            if cls is None or not hasattr(cls, "VALIDATE_INPUTS"):
                if node["class_type"] == "LoadImage" and node["inputs"].get("image") not in self.images:
                    problems.append(f"Invalid image file: {node['inputs'].get('image')}")
                continue
            wanted = inspect.signature(cls.VALIDATE_INPUTS).parameters
            values = {k: v for k, v in node["inputs"].items() if k in wanted and not isinstance(v, list)}
            verdict = cls.VALIDATE_INPUTS(**values)
            if verdict is not True:
                problems.append(str(verdict))
        return problems

    def execute(self, prompt: dict[str, Any]) -> None:
        outputs: dict[str, tuple] = {}
        for node_id in wc.api_order(prompt):
            node = prompt[node_id]
            kind = node["class_type"]
            inputs = {name: outputs[value[0]][value[1]] if isinstance(value, list) else value
                      for name, value in node["inputs"].items()}
            if kind == "LoadImage":
                image = self.images[inputs["image"]]
                outputs[node_id] = (image, torch.zeros(image.shape[:3]))
            elif kind == "PrimitiveStringMultiline":
                outputs[node_id] = (inputs["value"],)
            elif kind == "MaskToImage":
                outputs[node_id] = (inputs["mask"][..., None].expand(-1, -1, -1, 3),)
            elif kind in self.pack.NODE_CLASS_MAPPINGS:
                cls = self.pack.NODE_CLASS_MAPPINGS[kind]
                outputs[node_id] = getattr(cls(), cls.FUNCTION)(**inputs)
            else:  # previews and savers: the end of the graph
                outputs[node_id] = ()

    def submit(self, prompt: dict[str, Any]) -> Outcome:
        started = time.perf_counter()
        problems = self.validate(prompt)
        if problems:
            return Outcome("refused", "\n".join(problems), time.perf_counter() - started)
        try:
            self.execute(prompt)
        except Exception as exc:  # noqa: BLE001 - ComfyUI turns any exception into the prompt's error
            return Outcome("error", f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
        return Outcome("success", "", time.perf_counter() - started)


@pytest.fixture
def stand_in(pack, comfy, planted_dir):  # noqa: F811
    shutil.copytree(planted_dir, comfy.models / MODEL)
    picture = np.asarray(scene((1200, 700), BOXES[0]), np.float32) / 255.0
    huge = np.zeros((sc.HUGE_SIZE[1], sc.HUGE_SIZE[0], 3), np.float32)
    huge[:700, :1200] = picture
    images = {sc.IMAGE: torch.from_numpy(picture)[None], sc.HUGE_IMAGE: torch.from_numpy(huge)[None]}
    specs = {**wc.load_core_specs(), **wc.pack_specs(pack.NODE_CLASS_MAPPINGS)}
    return Stand_in(pack, specs, images)


def outside_folder(planted_dir, root) -> tuple[str, str]:
    outside = root.parent.parent / "elsewhere" / "secret-model"
    shutil.copytree(planted_dir, outside)
    return str(outside), os.path.relpath(outside, root)


def test_the_good_prompts_run(stand_in):
    for name in ("focus_vqa_one_node", "focus_vqa_step_by_step"):
        outcome = stand_in.submit(sc.workflow(name, MODEL))
        assert outcome.status == "success", (name, outcome)


def test_a_strangers_workflows_are_refused_or_bounded(stand_in, comfy, planted_dir):  # noqa: F811
    absolute, relative = outside_folder(planted_dir, comfy.models)
    crafted = sc.cases(MODEL, absolute, relative, stand_in.specs)
    assert len(crafted) >= 40
    for case in crafted:
        outcome = stand_in.submit(case.prompt)
        expected = {"validation": "refused", "execution": "error", "bounded": "success"}[case.outcome]
        assert outcome.status == expected, (case.name, outcome)
        if case.says:
            assert case.says in outcome.message, (case.name, outcome.message)
        if case.outcome == "execution":
            assert outcome.message.startswith("ValueError: FOCUS: "), (case.name, outcome.message)
        assert absolute not in outcome.message or "not a path" in outcome.message
        assert outcome.seconds < sc.SECONDS, (case.name, outcome.seconds)
    loaded = {key[0] for key in stand_in.pack.nodes.load_mllm._models}
    assert loaded == {os.path.realpath(comfy.models / MODEL)}  # no other folder was ever loaded
    good = stand_in.submit(sc.workflow("focus_vqa_one_node", MODEL))
    assert good.status == "success", good  # and the next good prompt is served
