"""Reading and checking ComfyUI workflows without ComfyUI.

Node specs use the shape of ComfyUI's ``/object_info`` entries:
``{"input": {"required": {name: [type, options]}, "optional": {...}},
"output": [types], "output_name": [names]}``. The core nodes the workflows use
are a snapshot of a real server's ``/object_info`` (``tools/comfy_core_nodes.json``);
the pack's specs come from its node classes.

UI format (what drag-and-drop loads): ``nodes`` with positional
``widgets_values`` and ``links`` as ``[id, from_node, from_slot, to_node,
to_slot, type]``. API format (what ``/prompt`` takes): ``{id: {"class_type",
"inputs"}}`` with a link written ``[from_id, from_slot]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
CORE_SPECS = ROOT / "tools" / "comfy_core_nodes.json"
OTHER_PACK_SPECS = ROOT / "tools" / "comfy_pack_nodes.json"
"""Nodes of other packs (SAM 2, Impact Pack) that FOCUS workflows wire to."""
VIRTUAL_NODES = {"Note", "MarkdownNote"}  # frontend-only: never sent to the server
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Combos whose choices are the files of the user's machine (models, images)
DYNAMIC_COMBOS = {("FocusLoadMLLM", "model"), ("CheckpointLoaderSimple", "ckpt_name"), ("LoadImage", "image")}


def load_core_specs() -> dict[str, Any]:
    return json.loads(CORE_SPECS.read_text())["nodes"]


def load_other_pack_specs() -> dict[str, Any]:
    return json.loads(OTHER_PACK_SPECS.read_text())["nodes"]


def other_packs_needed(prompt_or_ui: dict[str, Any]) -> list[str]:
    """The other packs a workflow needs (by the node types it uses)."""
    packs = json.loads(OTHER_PACK_SPECS.read_text())["packs"]
    nodes = prompt_or_ui.get("nodes")
    kinds = {n["type"] for n in nodes} if isinstance(nodes, list) else {n["class_type"] for n in prompt_or_ui.values()}
    return sorted(name for name, pack in packs.items() if kinds & set(pack["nodes"]))


def pack_specs(mappings: dict[str, Any]) -> dict[str, Any]:
    """The pack's node classes as ``/object_info``-shaped entries."""
    specs = {}
    for node_id, cls in mappings.items():
        sections = cls.INPUT_TYPES()
        specs[node_id] = {
            "input": {name: {k: [v[0] if isinstance(v[0], str) else list(v[0]), dict(v[1]) if len(v) > 1 else {}]
                             for k, v in sections.get(name, {}).items()}
                      for name in ("required", "optional")},
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        }
    return specs


def _inputs(spec: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    out = []
    for section in ("required", "optional"):
        for name, entry in spec["input"].get(section, {}).items():
            out.append((name, entry[0], entry[1] if len(entry) > 1 else {}))
    return out


def is_widget(kind: Any, options: dict[str, Any]) -> bool:
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def combo_choices(kind: Any, options: dict[str, Any]) -> list[Any] | None:
    if isinstance(kind, list):
        return kind
    if kind == "COMBO":
        return options.get("options")
    return None


def widget_inputs(spec: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    return [(n, k, o) for n, k, o in _inputs(spec) if is_widget(k, o)]


def socket_inputs(spec: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(name, type, required) of the inputs that are only sockets."""
    required = set(spec["input"].get("required", {}))
    return [(n, k, n in required) for n, k, o in _inputs(spec) if not is_widget(k, o)]


def widgets_layout(spec: dict[str, Any]) -> list[str | None]:
    """The UI's ``widgets_values`` slots: each widget input, plus the frontend's
    extra slots (None): the control-after-generate combo after a seed, the
    upload button after an image combo."""
    layout: list[str | None] = []
    for name, kind, options in widget_inputs(spec):
        layout.append(name)
        if options.get("control_after_generate") or (kind == "INT" and name in ("seed", "noise_seed")):
            layout.append(None)
        if options.get("image_upload"):
            layout.append(None)
    return layout


def check_widget_value(node_type: str, name: str, kind: Any, options: dict[str, Any], value: Any) -> str | None:
    where = f"{node_type}.{name}"
    choices = combo_choices(kind, options)
    if choices is not None:
        if (node_type, name) not in DYNAMIC_COMBOS and value not in choices:
            return f"{where}: {value!r} is not one of {choices}"
        return None if isinstance(value, str) else f"{where}: combo value {value!r} is not a string"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{where}: {value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{where}: {value!r} is not a string"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "INT" and value != int(value)):
            return f"{where}: {value!r} is not an {kind}"
        low, high = options.get("min"), options.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{where}: {value} is outside [{low}, {high}]"
    return None


def check_ui(workflow: dict[str, Any], specs: dict[str, Any]) -> list[str]:
    """Every problem that would stop the UI workflow from loading or running."""
    problems: list[str] = []
    nodes = {node["id"]: node for node in workflow["nodes"]}
    if len(nodes) != len(workflow["nodes"]):
        problems.append("duplicate node ids")
    links = {link[0]: link for link in workflow["links"]}
    if len(links) != len(workflow["links"]):
        problems.append("duplicate link ids")
    if workflow.get("last_node_id", 0) < max(nodes) or workflow.get("last_link_id", 0) < max(links, default=0):
        problems.append("last_node_id / last_link_id below the ids in use")
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in VIRTUAL_NODES:
            continue
        if kind not in specs:
            problems.append(f"node {node['id']}: unknown type {kind}")
            continue
        spec = specs[kind]
        layout = widgets_layout(spec)
        values = node.get("widgets_values", [])
        if len(values) != len(layout):
            problems.append(f"node {node['id']} {kind}: {len(values)} widgets_values for {len(layout)} slots {layout}")
        widgets = {n: (k, o) for n, k, o in widget_inputs(spec)}
        for name, value in zip(layout, values):
            if name is not None:
                problem = check_widget_value(kind, name, *widgets[name], value)
                if problem:
                    problems.append(f"node {node['id']}: {problem}")
        sockets = {n: (k, req) for n, k, req in socket_inputs(spec)}
        linked = set()
        for slot, entry in enumerate(node.get("inputs", [])):
            name = entry["name"]
            if name not in sockets and name not in widgets:
                problems.append(f"node {node['id']} {kind}: no input named {name}")
                continue
            if name in widgets and entry.get("widget", {}).get("name") != name:
                problems.append(f"node {node['id']} {kind}: widget input {name} lacks its widget marker")
            link_id = entry.get("link")
            if link_id is None:
                continue
            link = links.get(link_id)
            if link is None or link[3] != node["id"] or link[4] != slot:
                problems.append(f"node {node['id']} {kind}: input {name} names link {link_id} that does not end here")
                continue
            linked.add(name)
        for name, (_, required) in sockets.items():
            if required and name not in linked:
                problems.append(f"node {node['id']} {kind}: required input {name} is not connected")
        for slot, entry in enumerate(node.get("outputs", [])):
            if slot >= len(spec["output"]) or entry["type"] != spec["output"][slot]:
                problems.append(f"node {node['id']} {kind}: output {slot} {entry.get('type')} does not match the spec")
            for link_id in entry.get("links") or []:
                link = links.get(link_id)
                if link is None or link[1] != node["id"] or link[2] != slot:
                    problems.append(f"node {node['id']} {kind}: output {slot} names link {link_id} that starts elsewhere")
    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        if origin not in nodes or target not in nodes:
            problems.append(f"link {link_id}: joins a missing node")
            continue
        source_type = specs.get(nodes[origin]["type"], {}).get("output", [])
        if origin_slot >= len(source_type) or source_type[origin_slot] != kind:
            problems.append(f"link {link_id}: type {kind} is not output {origin_slot} of {nodes[origin]['type']}")
        target_inputs = nodes[target].get("inputs", [])
        if target_slot >= len(target_inputs) or target_inputs[target_slot].get("link") != link_id:
            problems.append(f"link {link_id}: target slot {target_slot} of node {target} does not hold it")
        elif target_inputs[target_slot]["type"] not in (kind, "*"):
            problems.append(f"link {link_id}: {kind} into an input of type {target_inputs[target_slot]['type']}")
        elif nodes[target]["type"] in specs:
            spec_inputs = {n: k for n, k, _ in _inputs(specs[nodes[target]["type"]])}
            expected = spec_inputs.get(target_inputs[target_slot]["name"])
            if expected != kind and not (isinstance(expected, list) and kind == "COMBO") and expected != "*":
                problems.append(f"link {link_id}: {kind} into {nodes[target]['type']}."
                                f"{target_inputs[target_slot]['name']} of type {expected}")
    return problems


def ui_to_api(workflow: dict[str, Any], specs: dict[str, Any]) -> dict[str, Any]:
    """The API prompt the frontend would queue for this UI workflow."""
    links = {link[0]: link for link in workflow["links"]}
    prompt: dict[str, Any] = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) != 0:
            continue
        spec = specs[node["type"]]
        inputs: dict[str, Any] = {}
        for name, value in zip(widgets_layout(spec), node.get("widgets_values", [])):
            if name is not None:
                inputs[name] = value
        for entry in node.get("inputs", []):
            if entry.get("link") is not None:
                link = links[entry["link"]]
                inputs[entry["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def check_api(prompt: dict[str, Any], specs: dict[str, Any]) -> list[str]:
    """Every problem the server's prompt validation would report."""
    problems = []
    for node_id, node in prompt.items():
        kind = node["class_type"]
        if kind not in specs:
            problems.append(f"{node_id}: unknown class_type {kind}")
            continue
        spec = specs[kind]
        required = spec["input"].get("required", {})
        for name, value in node["inputs"].items():
            entry = required.get(name) or spec["input"].get("optional", {}).get(name)
            if entry is None:
                problems.append(f"{node_id} {kind}: no input named {name}")
            elif isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                source = prompt.get(value[0])
                if source is None:
                    problems.append(f"{node_id} {kind}: {name} links to missing node {value[0]}")
                    continue
                out_types = specs.get(source["class_type"], {}).get("output", [])
                expected = entry[0]
                if value[1] >= len(out_types) or (out_types[value[1]] != expected and expected != "*"):
                    problems.append(f"{node_id} {kind}: {name} expects {expected}, gets output {value[1]} "
                                    f"of {source['class_type']}")
            else:
                problem = check_widget_value(kind, name, entry[0], entry[1] if len(entry) > 1 else {}, value)
                if problem:
                    problems.append(f"{node_id}: {problem}")
        for name in required:
            if name not in node["inputs"]:
                problems.append(f"{node_id} {kind}: required input {name} is missing")
    return problems


def api_order(prompt: dict[str, Any]) -> list[str]:
    """Node ids in an order where every node follows the nodes it reads from."""
    done: list[str] = []

    def visit(node_id: str, path: tuple[str, ...]) -> None:
        if node_id in done:
            return
        if node_id in path:
            raise ValueError(f"cycle through node {node_id}")
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                visit(value[0], path + (node_id,))
        done.append(node_id)

    for node_id in sorted(prompt, key=int):
        visit(node_id, ())
    return done


def workflow_pairs() -> list[tuple[str, Path, Path]]:
    """(name, UI file, API file) of each shipped workflow."""
    return [(ui.stem, ui, WORKFLOWS / "api" / f"{ui.stem}.json") for ui in sorted(WORKFLOWS.glob("*.json"))]
