"""Crafted workflows a stranger could share (issue 24), as API prompts built
from the shipped workflows. Played against the pack loaded the way ComfyUI
loads it (test_stranger.py) and against a real server
(test_workflows_server.py, with COMFYUI_PATH).

Each case is refused at validation (``validation``: ComfyUI's prompt check
or the node's VALIDATE_INPUTS), stops its node with a clear message
(``execution``), or runs within a bounded time (``bounded``); ``says`` is a
part of FOCUS's own message (None where the refusal is ComfyUI's own
wording, a type mismatch)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from tools import workflow_check as wc

QUESTION = "Where is the red square?"
IMAGE = "focus_example.png"
HUGE_IMAGE = "focus_huge.png"
HUGE_SIZE = (3000, 2400)
"""The oversized image (width, height) of the huge-image case."""
SECONDS = 60
"""No crafted prompt may take longer than this on the tiny test model."""


@dataclass
class Case:
    name: str
    prompt: dict[str, Any]
    outcome: str
    """``validation``, ``execution`` or ``bounded``."""
    says: str | None = None


def workflow(name: str, model: str, question: str = QUESTION) -> dict[str, Any]:
    """A shipped API workflow with the test's model, image and question."""
    prompt = json.loads((wc.WORKFLOWS / "api" / f"{name}.json").read_text())
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "FocusLoadMLLM":
            inputs.update(model=model, device="cpu")
        elif node["class_type"] == "LoadImage":
            inputs["image"] = IMAGE
        elif node["class_type"] == "PrimitiveStringMultiline":
            inputs["value"] = question
    return prompt


def node_of(prompt: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(node for node in prompt.values() if node["class_type"] == kind)


def changed(prompt: dict[str, Any], kind: str, **inputs: Any) -> dict[str, Any]:
    prompt = copy.deepcopy(prompt)
    node_of(prompt, kind)["inputs"].update(inputs)
    return prompt


def cases(model: str, outside_absolute: str, outside_relative: str, specs: dict[str, Any]) -> list[Case]:
    """Every crafted prompt; ``outside_*`` name a real model folder outside
    the model roots (absolute, and relative to models/LLM)."""
    one = workflow("focus_vqa_one_node", model)
    steps = workflow("focus_vqa_step_by_step", model)
    out = [
        Case("model: absolute path", changed(one, "FocusLoadMLLM", model=outside_absolute), "validation", "not a path"),
        Case("model: ../ path", changed(one, "FocusLoadMLLM", model=outside_relative), "validation", "not a path"),
        Case("model: folder/../folder", changed(one, "FocusLoadMLLM", model=f"{model}/../{model}"), "validation",
             "not a path"),
        Case("model: unknown hub id", changed(one, "FocusLoadMLLM", model="someone/some-model"), "validation",
             "not a path"),
        Case("model: unknown name", changed(one, "FocusLoadMLLM", model="no-such-model"), "validation",
             "'no-such-model' was not found"),
        Case("n_steps 10^9", changed(one, "FocusVQA", n_steps=10**9), "validation"),
        Case("300 targets", changed(one, "FocusVQA", targets_override=", ".join(f"thing {i}" for i in range(300))),
             "execution", "at most 8 objects"),
        Case("300 targets, step by step",
             changed(steps, "FocusExtractTargets", targets_override=", ".join(f"thing {i}" for i in range(300))),
             "execution", "at most 8 objects"),
        Case("a 2000-character target", changed(one, "FocusVQA", targets_override="red " * 500), "execution",
             "characters long"),
        Case("a 20,000-character question", workflow("focus_vqa_one_node", model, "Where is the red square? " * 800),
             "execution", "too long for this model"),
        Case("a 20,000-character question, step by step",
             workflow("focus_vqa_step_by_step", model, "Where is the red square? " * 800), "execution",
             "too long for this model"),
        Case("2000 options", changed(one, "FocusVQA", options="\n".join(f"choice {i}" for i in range(2000))),
             "execution", "between 2 and 26 options"),
        Case("three 1500-word options", changed(one, "FocusVQA", options="\n".join(["word " * 1500] * 3)),
             "execution", "too long for this model"),
        Case("an oversized image", changed(changed(one, "LoadImage", image=HUGE_IMAGE), "FocusVQA",
                                             targets_override="red"), "bounded"),
        Case("a list in a text widget", changed(one, "FocusVQA", options=[1, 2, 3]), "validation"),
        Case("a link to a missing node", changed(one, "FocusVQA", image=["99", 0]), "validation"),
    ]
    out += wrong_sockets(one, specs) + wrong_sockets(steps, specs) + wrong_widgets(one, specs)
    return out


def wrong_sockets(prompt: dict[str, Any], specs: dict[str, Any]) -> list[Case]:
    """Every linked input of every FOCUS node fed an output of another type
    (a FOCUS_MLLM socket given an IMAGE, an IMAGE socket the model, ...)."""
    outputs = [(node_id, slot, kind) for node_id, node in prompt.items()
               for slot, kind in enumerate(specs[node["class_type"]]["output"])]
    found = []
    for node_id, node in prompt.items():
        if not node["class_type"].startswith("Focus"):
            continue
        for name, value in node["inputs"].items():
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
                continue
            wanted = specs[prompt[value[0]]["class_type"]]["output"][value[1]]
            other = next((o for o in outputs if o[2] != wanted and o[0] != node_id), None)
            if other is None:
                continue
            bad = copy.deepcopy(prompt)
            bad[node_id]["inputs"][name] = [other[0], other[1]]
            found.append(Case(f"{node['class_type']}.{name} ({wanted}) fed {other[2]}", bad, "validation"))
    return found


def wrong_widgets(prompt: dict[str, Any], specs: dict[str, Any]) -> list[Case]:
    """Every number widget of every FOCUS node given a word, every choice a
    value not offered (the model name has its own cases above)."""
    found = []
    for node_id, node in prompt.items():
        kind = node["class_type"]
        if not kind.startswith("Focus"):
            continue
        for name, value in node["inputs"].items():
            entry = specs[kind]["input"]["required"].get(name) or specs[kind]["input"]["optional"].get(name)
            if isinstance(value, list) or entry is None or (kind, name) in wc.DYNAMIC_COMBOS:
                continue
            if entry[0] in ("INT", "FLOAT"):
                bad_value: Any = "many"
            elif wc.combo_choices(entry[0], entry[1]) is not None:
                bad_value = "not-a-choice"
            else:
                continue
            bad = copy.deepcopy(prompt)
            bad[node_id]["inputs"][name] = bad_value
            found.append(Case(f"{kind}.{name} = {bad_value!r}", bad, "validation"))
    return found
