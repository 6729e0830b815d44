"""Writes the shipped workflows: ``workflows/<name>.json`` (UI format, for
drag-and-drop and ComfyUI's template browser) and ``workflows/api/<name>.json``
(API format, for ``/prompt``), both from one description per workflow, so the
twins cannot drift apart. Run from the repository root after changing a node's
inputs: ``python -m tools.make_workflows``. ``tests/test_workflows.py`` checks
the result against the node specs on its own.

Layout: each node is as tall as ComfyUI's frontend draws it in either
renderer (``drawn_height``: the classic renderer's rule ``min_height``, and the
heights both renderers gave each node's content in the real frontend,
previews filled, ``tools/node_heights.json``) or taller, and goes below the nodes placed
before it in its column, so no two nodes overlap once drawn
(``tests/test_workflows_browser.py`` checks that in a real browser, in both
renderers).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any

from tools.workflow_check import (
    ROOT, load_core_specs, load_other_pack_specs, pack_specs, socket_inputs, widget_inputs, widgets_layout,
)

MODEL = "llava-1.5-7b-hf"  # a folder name in models/LLM; the user picks their own
IMAGE = "focus_example.png"
NODE_WIDTH = 320
TITLE_HEIGHT = 30
"""The frontend draws a node's title bar above its ``pos``."""
GAP = 30
"""Vertical space between one node's bottom and the next one's title bar in a column."""
SLOT_HEIGHT, WIDGET_HEIGHT, MULTILINE_HEIGHT = 20, 24, 54
FRONTEND_WIDGETS = {"PreviewAny": MULTILINE_HEIGHT, "Note": MULTILINE_HEIGHT}
"""Widgets the frontend adds that the node's inputs do not list (PreviewAny's text, a Note's)."""


def min_height(spec: dict[str, Any] | None, kind: str) -> int:
    """The height ComfyUI's frontend (1.27, measured with ``LGraphNode.computeSize``
    in headless Chromium: tools/browser_check.py) gives a node at least, whatever
    the saved size: a row of 20 px per socket (inputs and outputs side by side,
    at least one row), 6 px, then when there are widgets 8 px plus 24 px a
    widget (54 px a multiline text; the control-after-generate combo and the
    upload button count as widgets)."""
    sockets = max(len(socket_inputs(spec)), len(spec["output"])) if spec else 0
    widgets = []
    if spec:
        options = {name: o for name, _, o in widget_inputs(spec)}
        widgets = [MULTILINE_HEIGHT if name is not None and options[name].get("multiline") else WIDGET_HEIGHT
                   for name in widgets_layout(spec)]
    if kind in FRONTEND_WIDGETS:
        widgets.append(FRONTEND_WIDGETS[kind])
    return max(1, sockets) * SLOT_HEIGHT + 6 + (sum(widgets) + 8 if widgets else 0)


NODE_HEIGHTS = ROOT / "tools" / "node_heights.json"
"""Per renderer ("classic", "vue": Nodes 2.0) and node type, the height (title
bar included) the frontend gave the node's content, measured with
``python -m tools.browser_check URL --measure [--vue]``."""


def measured_height(kind: str) -> int:
    """The tallest measured height of ``kind`` in either renderer, without its title bar (0: not measured)."""
    measured = json.loads(NODE_HEIGHTS.read_text())
    return max(0, max(measured[r].get(kind, 0) for r in ("classic", "vue")) - TITLE_HEIGHT)


def drawn_height(spec: dict[str, Any] | None, kind: str) -> int:
    """The height a node needs to show all of itself in both renderers, previews
    filled: the frontend grows a node to its content, never shrinks it below
    its saved size."""
    return max(min_height(spec, kind), measured_height(kind))


def load_pack_mappings() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(
        "comfyui_focus", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_focus"] = module
    spec.loader.exec_module(module)
    return module.NODE_CLASS_MAPPINGS


class Node:
    def __init__(self, graph: "Graph", node_id: int, kind: str, widgets: dict[str, Any], pos: tuple[int, int],
                 height: int, title: str | None) -> None:
        self.graph, self.id, self.kind, self.widgets, self.pos, self.height = graph, node_id, kind, widgets, pos, height
        self.title = title
        self.links_in: dict[str, int] = {}
        self.links_out: dict[int, list[int]] = {}

    def __getitem__(self, output: str) -> tuple["Node", int]:
        names = self.graph.specs[self.kind]["output_name"]
        return self, names.index(output)


class Graph:
    """One workflow: nodes with their widget values, links by socket names."""

    def __init__(self, specs: dict[str, Any]) -> None:
        self.specs = specs
        self.nodes: list[Node] = []
        self.notes: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []
        self.bottoms: dict[int, int] = {}
        """Each column's (x's) lowest drawn edge so far."""

    def place(self, pos: tuple[int, int], height: int) -> tuple[int, int]:
        """``pos`` or, where the column's last node reaches below it, just under
        that node (title bar and gap included)."""
        x, y = pos
        if x in self.bottoms:
            y = max(y, self.bottoms[x] + GAP + TITLE_HEIGHT)
        self.bottoms[x] = y + height
        return x, y

    def add(self, kind: str, pos: tuple[int, int], height: int = 120, title: str | None = None,
            **inputs: Any) -> Node:
        """A node at ``pos`` (x, and y at the least: placed below the nodes above
        it in its column), ``height`` tall or as tall as the frontend draws it."""
        height = max(height, drawn_height(self.specs.get(kind), kind))
        pos = self.place(pos, height)
        node = Node(self, len(self.nodes) + len(self.notes) + 1, kind, {}, pos, height, title)
        self.nodes.append(node)
        widget_names = [n for n, _, _ in widget_inputs(self.specs[kind])]
        for name, value in inputs.items():
            if isinstance(value, tuple):
                self.connect(value, node, name)
            elif name in widget_names:
                node.widgets[name] = value
            else:
                raise KeyError(f"{kind} has no widget {name}")
        return node

    def connect(self, source: tuple[Node, int], target: Node, name: str) -> None:
        origin, slot = source
        link_id = len(self.links) + 1
        self.links.append([link_id, origin.id, slot, target.id, name, origin.graph.specs[origin.kind]["output"][slot]])
        target.links_in[name] = link_id
        origin.links_out.setdefault(slot, []).append(link_id)

    def note(self, text: str, pos: tuple[int, int], size: tuple[int, int] = (NODE_WIDTH, 160)) -> None:
        node_id = len(self.nodes) + len(self.notes) + 1
        size = (size[0], max(size[1], drawn_height(None, "Note")))
        pos = self.place(pos, size[1])
        self.notes.append({
            "id": node_id, "type": "Note", "pos": list(pos), "size": list(size), "flags": {}, "order": 0, "mode": 0,
            "inputs": [], "outputs": [], "properties": {"text": ""}, "widgets_values": [text],
            "color": "#432", "bgcolor": "#653",
        })

    def group(self, title: str, members: list[Node], color: str = "#3f789e", pad: int = 10) -> None:
        """A group drawn around ``members`` (their title bars included) and its own title."""
        left = min(n.pos[0] for n in members) - pad
        top = min(n.pos[1] for n in members) - TITLE_HEIGHT - pad - 40
        right = max(n.pos[0] + NODE_WIDTH for n in members) + pad
        bottom = max(n.pos[1] + n.height for n in members) + pad
        self.groups.append({"title": title, "bounding": [left, top, right - left, bottom - top], "color": color,
                            "font_size": 24, "flags": {}})

    # -- serialisation ---------------------------------------------------------------------------------------
    def _inputs_of(self, node: Node) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The UI node's input slots: every socket input, then each widget that
        takes a link (the frontend keeps its value in widgets_values)."""
        spec = self.specs[node.kind]
        entries, slots = [], {}
        for name, kind, required in socket_inputs(spec):
            if required or name in node.links_in:
                slots[name] = len(entries)
                entries.append({"name": name, "type": kind, "link": node.links_in.get(name)})
        for name, kind, _ in widget_inputs(spec):
            if name in node.links_in:
                slots[name] = len(entries)
                entries.append({"name": name, "type": "COMBO" if isinstance(kind, list) else kind,
                                "widget": {"name": name}, "link": node.links_in[name]})
        return entries, slots

    def _widgets_values(self, node: Node) -> list[Any]:
        spec = self.specs[node.kind]
        defaults = {n: o.get("default", (k[0] if isinstance(k, list) and k else None))
                    for n, k, o in widget_inputs(spec)}
        layout = widgets_layout(spec)
        values = []
        for slot, name in enumerate(layout):
            if name is not None:
                values.append(node.widgets.get(name, defaults[name]))
            else:
                values.append("image" if layout[slot - 1] == "image" and node.kind == "LoadImage" else "fixed")
        return values

    def _order(self) -> list[Node]:
        by_id = {n.id: n for n in self.nodes}
        sources = {n.id: {link[1] for link in self.links if link[3] == n.id} for n in self.nodes}
        done: list[Node] = []
        while len(done) < len(self.nodes):
            for node in self.nodes:
                if node not in done and all(by_id[s] in done for s in sources[node.id]):
                    done.append(node)
        return done

    def ui(self) -> dict[str, Any]:
        slots_by_node = {}
        nodes = []
        order = {node.id: i for i, node in enumerate(self._order())}
        for node in self.nodes:
            inputs, slots = self._inputs_of(node)
            slots_by_node[node.id] = slots
            spec = self.specs[node.kind]
            outputs = [{"name": name, "type": kind, "links": node.links_out.get(slot, []), "slot_index": slot}
                       for slot, (name, kind) in enumerate(zip(spec["output_name"], spec["output"]))]
            entry = {
                "id": node.id, "type": node.kind, "pos": list(node.pos), "size": [NODE_WIDTH, node.height],
                "flags": {}, "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": node.kind}, "widgets_values": self._widgets_values(node),
            }
            if node.title:
                entry["title"] = node.title
            nodes.append(entry)
        links = [[link_id, origin, slot, target, slots_by_node[target][name], kind]
                 for link_id, origin, slot, target, name, kind in self.links]
        all_nodes = sorted(nodes + self.notes, key=lambda n: n["id"])
        return {
            "last_node_id": max(n["id"] for n in all_nodes), "last_link_id": len(self.links),
            "nodes": all_nodes, "links": links, "groups": self.groups, "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [60, 120]}}, "version": 0.4,
        }

    def api(self) -> dict[str, Any]:
        prompt = {}
        for node in self.nodes:
            values = dict(zip(widgets_layout(self.specs[node.kind]), self._widgets_values(node)))
            inputs = {name: values[name] for name, _, _ in widget_inputs(self.specs[node.kind])
                      if name not in node.links_in}
            for name, link_id in node.links_in.items():
                link = self.links[link_id - 1]
                inputs[name] = [str(link[1]), link[2]]
            prompt[str(node.id)] = {"class_type": node.kind, "inputs": inputs,
                                    "_meta": {"title": node.title or node.kind}}
        return prompt


def _model_and_image(g: Graph, question: str, x: int = 0) -> tuple[Node, Node, Node]:
    mllm = g.add("FocusLoadMLLM", (x, 0), 190, model=MODEL, precision="auto", attention="auto",
                 device="auto", keep_loaded=True, quantization="none")
    image = g.add("LoadImage", (x, 230), 330, image=IMAGE)
    text = g.add("PrimitiveStringMultiline", (x, 600), 140, title="Question", value=question)
    return mllm, image, text


def step_by_step(specs: dict[str, Any]) -> Graph:
    g = Graph(specs)
    mllm, image, question = _model_and_image(g, "What is the colour of the sign next to the door?")
    targets = g.add("FocusExtractTargets", (380, 0), 150, mllm=mllm["mllm"], question=question["STRING"])
    g.add("PreviewAny", (380, 190), 120, title="Targets", source=targets["targets_text"])
    relevance = g.add("FocusRelevanceMap", (760, 0), 190, mllm=mllm["mllm"], image=image["IMAGE"],
                      targets=targets["targets"], layer_start=0, layer_end=0, source="values")
    g.add("PreviewImage", (760, 230), 260, title="Relevance overlay", images=relevance["preview"])
    proposals = g.add("FocusProposeROIs", (1140, 0), 250, relevance=relevance["relevance"], anchors=0,
                      spacing=-1.0, min_size=0, max_size=0, threshold=0.5, nms_iou=0.3)
    proposals_image = g.add("MaskToImage", (1140, 290), 60, mask=proposals["proposals_mask"])
    g.add("PreviewImage", (1140, 390), 260, title="All proposals", images=proposals_image["IMAGE"])
    ranked = g.add("FocusRankROIs", (1520, 0), 190, mllm=mllm["mllm"], image=image["IMAGE"],
                   rois=proposals["rois"], targets=targets["targets"], n_steps=4, overrun=False)
    g.add("PreviewImage", (1520, 230), 260, title="Best crop", images=ranked["best_crop"])
    g.add("PreviewAny", (1520, 530), 160, title="Ranked boxes (JSON)", source=ranked["boxes_json"])
    answer = g.add("FocusAnswer", (1900, 0), 190, mllm=mllm["mllm"], image=image["IMAGE"],
                   question=question["STRING"], rois=ranked["rois"], targets=targets["targets"], options="",
                   gate=0.0)
    g.add("PreviewAny", (1900, 230), 120, title="Answer", source=answer["answer"])
    g.add("SaveImage", (1900, 390), 300, images=answer["annotated"], filename_prefix="focus/annotated")
    g.note(
        "FOCUS step by step.\n\n1. Put a model folder in ComfyUI/models/LLM (LLaVA-1.5, LLaVA-OneVision or "
        "Qwen2.5-VL, a whole Hugging Face folder) and pick it in Load MLLM.\n2. Load a high-resolution image and "
        "type the question once (the String node feeds both Extract Targets and Answer).\n3. Queue: the previews "
        "show the targets, the relevance heatmap, every proposal, the verified best crop, and the answer.\n\n"
        "Multiple choice: one option per line in Answer's 'options' widget.",
        (0, 790), (NODE_WIDTH, 260),
    )
    g.note("Layer range 0/0 = the family default (LLaVA-1.5: 14-32). source: values (FOCUS), keys or random "
           "(the paper's ablations). Rank ROIs: at most n_steps ROIs per target verified, in relevance order, "
           "stopping at the first sure one (1 without overrun: none); overrun, the paper's, goes on until a Yes. "
           "preset (optional widgets): the paper's settings; choose it on each node that has it.", (760, 540), (NODE_WIDTH, 180))
    g.group("Visual search", [n for n in g.nodes if 380 <= n.pos[0] <= 1520])
    return g


def _vqa_node(g: Graph, question: str) -> tuple[Node, Node]:
    mllm, image, text = _model_and_image(g, question)
    vqa = g.add("FocusVQA", (380, 0), 220, mllm=mllm["mllm"], image=image["IMAGE"], question=text["STRING"],
                n_steps=4, options="", targets_override="", gate=0.0)
    return image, vqa


def one_node(specs: dict[str, Any]) -> Graph:
    g = Graph(specs)
    _, vqa = _vqa_node(g, "What is the colour of the sign next to the door?")
    g.add("PreviewAny", (760, 0), 120, title="Answer", source=vqa["answer"])
    g.add("PreviewImage", (760, 160), 300, title="Heatmap, ROIs, crop", images=vqa["preview"])
    mask_image = g.add("MaskToImage", (380, 260), 60, mask=vqa["mask"])
    g.add("PreviewImage", (380, 360), 260, title="ROI mask", images=mask_image["IMAGE"])
    g.add("PreviewAny", (760, 500), 160, title="Boxes (JSON)", source=vqa["boxes_json"])
    g.note("The whole FOCUS pipeline in one node. Pick your model folder (ComfyUI/models/LLM) in Load MLLM, load "
           "an image, type the question. The mask output is 1 where the ROIs the answer used hold the object "
           "(mask_shape relevance; box: the whole ROIs), at the image's size: feed it to any mask, composite or "
           "inpaint node.", (0, 790), (NODE_WIDTH, 200))
    return g


def _visual_search(g: Graph, question: str) -> tuple[Node, Node]:
    mllm, image, text = _model_and_image(g, question)
    targets = g.add("FocusExtractTargets", (380, 0), 150, mllm=mllm["mllm"], question=text["STRING"])
    relevance = g.add("FocusRelevanceMap", (380, 190), 190, mllm=mllm["mllm"], image=image["IMAGE"],
                      targets=targets["targets"], layer_start=0, layer_end=0, source="values")
    proposals = g.add("FocusProposeROIs", (380, 420), 250, relevance=relevance["relevance"], anchors=0,
                      spacing=-1.0, min_size=0, max_size=0, threshold=0.5, nms_iou=0.3)
    ranked = g.add("FocusRankROIs", (380, 710), 190, mllm=mllm["mllm"], image=image["IMAGE"],
                   rois=proposals["rois"], targets=targets["targets"], n_steps=4, overrun=False)
    g.group("FOCUS: find the region", [targets, relevance, proposals, ranked])
    return image, ranked


def _blur_by_mask(g: Graph, image: Node, mask: tuple[Node, int], sizes: tuple[int, int, int, float], title: str,
                  blur_inside: bool, prefix: str) -> None:
    """Core nodes only: ``mask`` grown and feathered, a blurred copy of the
    image composited inside it (``blur_inside``) or the sharp image over the
    blurred one, saved under ``prefix``; ``sizes``: grow, feather (px), blur
    radius and sigma."""
    grow, feather, radius, sigma = sizes
    grown = g.add("GrowMask", (760, 0), 110, mask=mask, expand=grow, tapered_corners=True)
    feathered = g.add("FeatherMask", (760, 150), 160, mask=grown["MASK"], left=feather, top=feather, right=feather,
                      bottom=feather)
    blurred = g.add("ImageBlur", (760, 350), 110, image=image["IMAGE"], blur_radius=radius, sigma=sigma)
    sharp, soft = image["IMAGE"], blurred["IMAGE"]
    composite = g.add("ImageCompositeMasked", (1140, 0), 190, title=title, destination=sharp if blur_inside else soft,
                      source=soft if blur_inside else sharp, x=0, y=0, resize_source=False, mask=feathered["MASK"])
    g.add("SaveImage", (1520, 0), 300, images=composite["IMAGE"], filename_prefix=prefix)


def roi_edit(specs: dict[str, Any]) -> Graph:
    g = Graph(specs)
    image, ranked = _visual_search(g, "Where is the red car?")
    _blur_by_mask(g, image, ranked["selected_mask"], (24, 32, 15, 8.0), "ROI sharp, background blurred",
                  blur_inside=False, prefix="focus/roi_edit")
    crop = g.add("FocusCropROI", (760, 500), 150, image=image["IMAGE"], rois=ranked["rois"], index=0, padding=32)
    upscaled = g.add("ImageScaleBy", (1140, 500), 110, image=crop["crop"], upscale_method="lanczos", scale_by=2.0)
    g.add("SaveImage", (1520, 500), 300, images=upscaled["IMAGE"], filename_prefix="focus/roi_zoom")
    g.note("ROI editing with core nodes only (no extra model). The verified ROI's mask is grown and feathered, "
           "then the sharp original is composited over a blurred copy: a depth-of-field 'focus' effect on the "
           "region the question is about. Below: the best ROI cropped with context and upscaled 2x.\n\nSwap "
           "ImageBlur for any image edit; feed the mask to any mask node.", (1140, 250), (NODE_WIDTH, 220))
    return g


def find_edit(specs: dict[str, Any]) -> Graph:
    g = Graph(specs)
    mllm = g.add("FocusLoadMLLM", (0, 0), 190, model=MODEL, precision="auto", attention="auto",
                 device="auto", keep_loaded=True, quantization="none")
    image = g.add("LoadImage", (0, 230), 330, image=IMAGE)
    found = g.add("FocusFind", (380, 0), 250, mllm=mllm["mllm"], image=image["IMAGE"], objects="red car", n_steps=4,
                  question="")
    g.add("PreviewImage", (380, 300), 260, title="Found (red)", images=found["preview"])
    g.add("PreviewAny", (380, 600), 160, title="Regions and confidences (JSON)", source=found["regions_json"])
    _blur_by_mask(g, image, found["mask"], (16, 16, 31, 10.0), "The object blurred out", blur_inside=True,
                  prefix="focus/find_edit")
    g.note("Find an object and edit it, with no question and no answer to pay for: FOCUS · Find searches for the "
           "objects you name (comma-separated; or leave objects empty and give a question), verifies each region "
           "and gives its mask, boxes (BBOX, SEGS, core BOUNDING_BOX) and confidences. Here the found object is "
           "blurred out with core nodes: swap ImageBlur for any edit.", (1140, 250), (NODE_WIDTH, 220))
    return g


def _sd_model(g: Graph, x: int, positive: str) -> tuple[Node, Node, Node]:
    """An SD 1.5 checkpoint with its positive and negative prompts, in a column at ``x``."""
    checkpoint = g.add("CheckpointLoaderSimple", (x, 0), 100, ckpt_name="v1-5-pruned-emaonly-fp16.safetensors")
    positive_node = g.add("CLIPTextEncode", (x, 140), 150, title="Positive", clip=checkpoint["CLIP"], text=positive)
    negative = g.add("CLIPTextEncode", (x, 330), 150, title="Negative", clip=checkpoint["CLIP"],
                     text="blurry, low quality")
    return checkpoint, positive_node, negative


def _sd_inpaint(g: Graph, image: Node, mask: tuple[Node, int], x: int, grow: int, prefix: str) -> None:
    """SD 1.5 inpainting of ``mask`` in ``image``, saved under ``prefix``; columns from ``x``."""
    checkpoint, positive, negative = _sd_model(g, x, "a small blue bicycle, photo, detailed")
    latent = g.add("VAEEncodeForInpaint", (x, 520), 140, pixels=image["IMAGE"], vae=checkpoint["VAE"],
                   mask=mask, grow_mask_by=grow)
    sampled = g.add("KSampler", (x + 380, 0), 270, model=checkpoint["MODEL"], positive=positive["CONDITIONING"],
                    negative=negative["CONDITIONING"], latent_image=latent["LATENT"], seed=42, steps=20, cfg=7.0,
                    sampler_name="euler", scheduler="normal", denoise=1.0)
    decoded = g.add("VAEDecode", (x + 380, 310), 60, samples=sampled["LATENT"], vae=checkpoint["VAE"])
    g.add("SaveImage", (x + 760, 0), 300, images=decoded["IMAGE"], filename_prefix=prefix)


def roi_inpaint(specs: dict[str, Any]) -> Graph:
    g = Graph(specs)
    image, vqa = _vqa_node(g, "Where is the red car?")
    g.add("PreviewImage", (380, 260), 300, title="FOCUS preview", images=vqa["preview"])
    _sd_inpaint(g, image, vqa["mask"], 760, 16, "focus/roi_inpaint")
    g.note("Inpaint the region FOCUS found: the mask of the ROIs the answer used goes to VAE Encode (for "
           "Inpainting). Needs a Stable Diffusion 1.5 inpainting-capable checkpoint in models/checkpoints (pick it "
           "in Load Checkpoint). Large images: scale down first (Upscale Image By 0.5) - SD 1.5 works best near "
           "512-768 px.", (1140, 420), (NODE_WIDTH, 200))
    return g


def sam2_inpaint(specs: dict[str, Any]) -> Graph:
    g = Graph(specs)
    image, vqa = _vqa_node(g, "Where is the red car?")
    sam2 = g.add("DownloadAndLoadSAM2Model", (380, 260), 130, model="sam2.1_hiera_small.safetensors",
                 segmentor="single_image", device="cpu", precision="fp32")
    mask = g.add("Sam2Segmentation", (760, 0), 170, sam2_model=sam2["sam2_model"], image=image["IMAGE"],
                 keep_model_loaded=False, bboxes=vqa["bboxes"], individual_objects=True)
    shown = g.add("MaskToImage", (760, 220), 60, mask=mask["mask"])
    g.add("PreviewImage", (760, 320), 260, title="SAM 2 mask of the FOCUS region", images=shown["IMAGE"])
    _sd_inpaint(g, image, mask["mask"], 1140, 8, "focus/sam2_inpaint")
    g.note("FOCUS finds the region the question is about; SAM 2 turns its box into the object's exact mask; the "
           "mask is inpainted. Needs kijai's ComfyUI-segment-anything-2 (it downloads the SAM 2 weights into "
           "models/sam2 on first use) and a Stable Diffusion 1.5 checkpoint in models/checkpoints. SAM 2 is set to "
           "cpu / fp32, which runs on every machine; with an NVIDIA GPU choose cuda / fp16 for speed. "
           "individual_objects on: every FOCUS box is segmented. One image at a time: with a batch, "
           "Sam2Segmentation gives every box to every image. With FOCUS's gate on, a question answered without a "
           "search hands SAM 2 the whole image's box.",
           (1520, 420), (NODE_WIDTH, 280))
    return g


def detailer(specs: dict[str, Any]) -> Graph:
    g = Graph(specs)
    image, vqa = _vqa_node(g, "What is written on the sign?")
    g.add("PreviewImage", (380, 260), 300, title="FOCUS preview", images=vqa["preview"])
    checkpoint, positive, negative = _sd_model(g, 760, "sharp, detailed, clear lettering")
    detailed = g.add("DetailerForEach", (1140, 0), 560, image=image["IMAGE"], segs=vqa["segs"],
                     model=checkpoint["MODEL"], clip=checkpoint["CLIP"], vae=checkpoint["VAE"], guide_size=512,
                     guide_size_for=True, max_size=1024, seed=42, steps=20, cfg=7.0, sampler_name="euler",
                     scheduler="normal", positive=positive["CONDITIONING"], negative=negative["CONDITIONING"],
                     denoise=0.4, feather=5, noise_mask=True, force_inpaint=True, wildcard="", cycle=1,
                     inpaint_model=False, noise_mask_feather=0)
    g.add("SaveImage", (1520, 0), 300, images=detailed["IMAGE"], filename_prefix="focus/detailer")
    g.note("FOCUS's regions as SEGS go to Impact Pack's Detailer (SEGS): each region is enlarged, redrawn at "
           "denoise 0.4 and pasted back. Needs ltdrdata's ComfyUI-Impact-Pack and a Stable Diffusion 1.5 checkpoint "
           "in models/checkpoints. The SEGS are the first image's (Impact's detailers take one image). "
           "noise_mask_feather 0: with more, older Impact Pack releases (7.10.6) fail on current ComfyUI (its issue #1113).",
           (1520, 360), (NODE_WIDTH, 200))
    return g


WORKFLOWS = {
    "focus_vqa_step_by_step": step_by_step,
    "focus_vqa_one_node": one_node,
    "focus_roi_edit": roi_edit,
    "focus_find_edit": find_edit,
    "focus_roi_inpaint": roi_inpaint,
    "focus_sam2_inpaint": sam2_inpaint,
    "focus_detailer": detailer,
}


def main() -> None:
    specs = {**load_core_specs(), **load_other_pack_specs(), **pack_specs(load_pack_mappings())}
    (ROOT / "workflows" / "api").mkdir(parents=True, exist_ok=True)
    for name, build in WORKFLOWS.items():
        graph = build(specs)
        (ROOT / "workflows" / f"{name}.json").write_text(json.dumps(graph.ui(), indent=1) + "\n")
        (ROOT / "workflows" / "api" / f"{name}.json").write_text(json.dumps(graph.api(), indent=1) + "\n")
        print(f"wrote workflows/{name}.json and workflows/api/{name}.json")


if __name__ == "__main__":
    main()
