"""ZoomEye (Shen et al., arXiv 2411.16044), the tree-search baseline FOCUS is
compared with, written from the public code's behaviour on this engine's
model interface (nothing copied; docs/zoomeye.md says where it departs).

The image is a tree: a node splits into four children (2x2, or 1x4 / 4x1
when it is twice as tall as wide or the reverse) until its long side is
below the encoder's input side; the search goes at most 5 levels deep (2 for
"all X" targets). Every node is scored with two yes/no questions, one
forward pass each, as ``c = 2 * (P(Yes) - 0.5)``: does the target exist in
this view (existence), and could it be found by zooming further (latent).
Its priority mixes them with a depth weight ``w = b + (1 - b) * d^2 / D^2``:
``w * existence + (1 - w) * latent``. A best-first queue pops the most
promising node, asks whether the question can be answered from it
(answering confidence), stops at ``upper`` (lowered step by step after
``3 * D`` pops), and otherwise queues the node's children. Each target is
searched on its own; "all X" targets are scanned to depth 2 and every view
sure enough that X is there is kept. The answer is given on the chosen
nodes' crop (with the whole image and the region drawn, for global-local
models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from PIL import Image, ImageDraw

from ..answer import answer_on
from ..boxes import (
    XYWH,
    Box,
    grow_box,
    merge_overlapping,
    union_box,
    window_about_centre,
    xywh_to_xyxy,
)
from ..config import (  # ZoomEyeSettings re-exported: its home is config
    FocusConfig,
    ZoomEyeSettings,
)
from ..images import crop
from ..targets import find_targets
from .base import Method, MethodResult, Run

EXISTENCE = "Is there a {target} in the image? Answer Yes or No."
EXISTENCE_ZOOM = "Is there a {target} in the zoomed-in view? Answer Yes or No."
LATENT = (
    "According to your common sense knowledge and the content of the image, is it possible to find a {target} "
    "in the image? Answer Yes or No and tell the reason."
)
LATENT_GLOBAL = (
    "According to your common sense knowledge and the content of image, is it possible to find a {target} by "
    "further zooming in the image? Answer Yes or No and tell the reason."
)
LATENT_ZOOM = (
    "According to your common sense knowledge and the content of the zoomed-in view, along with its location in "
    "the image, is it possible to find a {target} by further zooming in the current view? Answer Yes or No and "
    "tell the reason."
)
ANSWERING = (
    "Question: {question}\nCould you answer the question based on the available visual information? "
    "Answer Yes or No."
)
APPEARANCE = "What is the appearance of the {target}?"
ZOOM_PREFIX = (
    "The first image is the main image, and the section enclosed by the red rectangle is the focus region. "
    "The second image is the zoomed-in view of the focus region.\n"
)
BOX_COLOUR = (255, 0, 0)
MERGE_GAP = 50
"""Final boxes closer than this (px, each grown by it) are merged."""
SIDE_BY_SIDE_SPAN = 1000
"""Local models: two final regions whose union is longer than this go side by side."""


@dataclass
class Node:
    xywh: XYWH  # (x, y, width, height), as the tree splits it; .xyxy for the box
    depth: int
    children: list["Node"] = field(default_factory=list)
    existence: float | None = None
    latent: float | None = None
    answering: float | None = None

    @property
    def xyxy(self) -> Box:
        return xywh_to_xyxy(self.xywh)


def split(xywh: XYWH) -> list[XYWH]:
    """Four children of ``(x, y, width, height)``, in the same format, row by
    row: 1 column x 4 rows when it is at least twice as tall as wide, 4 x 1
    when twice as wide, else 2 x 2; strides are rounded down and the last row
    / column takes the remainder."""
    x, y, w, h = xywh
    ratio = h / w
    cols, rows = (1, 4) if ratio >= 2 else (4, 1) if ratio <= 0.5 else (2, 2)
    step_w, step_h = w // cols, h // rows
    children = []
    for j in range(rows):
        for i in range(cols):
            cw = w - i * step_w if i == cols - 1 else step_w
            ch = h - j * step_h if j == rows - 1 else step_h
            children.append((x + i * step_w, y + j * step_h, cw, ch))
    return children


def build_tree(size: tuple[int, int], input_side: int, max_depth: int | None = None) -> Node:
    """The image tree down to the leaves (long side below ``input_side``)."""

    def grow(node: Node) -> None:
        _, _, w, h = node.xywh
        if max(w, h) < input_side or (max_depth is not None and node.depth >= max_depth):
            return
        node.children = [Node(child, node.depth + 1) for child in split(node.xywh)]
        for child in node.children:
            grow(child)

    root = Node((0, 0, size[0], size[1]), 0)
    grow(root)
    return root


def tree_depth(node: Node) -> int:
    return max([tree_depth(child) for child in node.children], default=node.depth)


def depth_weight(depth: int, max_depth: int, bias: float) -> float:
    """w(d) = b + (1 - b) * d^2 / D^2: the existence weight, growing with depth."""
    return bias + (1.0 - bias) * depth**2 / max_depth**2 if max_depth > 0 else 1.0


def patch_box(node: Node, image_size: tuple[int, int], settings: ZoomEyeSettings) -> Box:
    """The region shown for a node: its box enlarged to at least S (and by the
    patch scale) about its centre, shifted inside the image at the left / top
    and cut at the right / bottom, as ZoomEye does."""
    scale = 1.0 if settings.patch_scale is None else settings.patch_scale
    return window_about_centre(node.xyxy, scale, image_size, min_side=settings.input_side)


def marked(image: Image.Image, boxes: Sequence[Box]) -> tuple[Image.Image, Box]:
    """The image with a red rectangle around each box (line width 1/120 of
    the long side), and the union of the drawn rectangles."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    line = max(1, max(image.size) // 120)
    drawn = []
    for box in boxes:
        grown = grow_box(box, line, image.size)
        draw.rectangle((grown[0], grown[1], grown[2] - 1, grown[3] - 1), outline=BOX_COLOUR, width=line)
        drawn.append(grown)
    return out, union_box(drawn)


@dataclass(kw_only=True)
class ZoomEyeResult(MethodResult):
    chosen: list[Box] = field(default_factory=list)
    """The regions the answer looked at (original pixels; none when it
    answered on the whole image)."""
    visited: list[Box] = field(default_factory=list)
    """Every region below the root the search popped, in order."""

    @property
    def regions(self) -> list[Box]:
        return list(self.chosen)

    def describe(self) -> list[tuple[str, str]]:
        return super().describe() + [("region", f"box {list(box)}") for box in self.chosen]

    def _json_fields(self) -> dict[str, Any]:
        return {"chosen": [list(b) for b in self.chosen], "visited": [list(b) for b in self.visited]}

    def _record_fields(self) -> dict[str, Any]:
        return {"ranked_boxes": [list(b) for b in self.visited], "selected_boxes": [list(b) for b in self.chosen]}


class ZoomEye(Method):
    """``ZoomEye(mllm).run(image, question, options)``: the baseline search,
    with the family's constants (``ZoomEyeSettings.for_model``)."""

    name = "zoomeye"

    def __init__(self, mllm: Any, config: FocusConfig | None = None, settings: ZoomEyeSettings | None = None):
        super().__init__(mllm, config)
        self.settings = settings or ZoomEyeSettings.for_model(mllm)

    def resolved_config(self) -> FocusConfig:
        """The config as given: ZoomEye reads none of FOCUS's family defaults
        (its own constants are ``self.settings``)."""
        return self.config

    # ------------------------------------------------------------ one view
    def _views(self, image: Image.Image, node: Node, root_whole: bool) -> tuple[list[Image.Image], bool]:
        """The images shown for ``node`` and whether they are a zoomed pair."""
        if node.depth == 0 and root_whole:
            return [image], False
        region = patch_box(node, image.size, self.settings)
        if self.settings.view == "local":
            return [crop(image, region)], False
        boxed, drawn = marked(image, [region])
        return [boxed, crop(boxed, drawn)], True

    def _confidences(self, image: Image.Image, asks: Sequence[tuple[Node, str, str]], should_stop: Any) -> list[float]:
        """``c = 2 * (P(Yes) - 0.5)`` for each (node, kind, text), one forward
        pass each (``kind``: existence | latent | answering)."""
        prompts = []
        for node, kind, text in asks:
            images, zoomed = self._views(image, node, root_whole=True)
            if kind == "existence":
                template = EXISTENCE_ZOOM if zoomed else EXISTENCE
                body = template.format(target=text)
            elif kind == "latent":
                template = LATENT_ZOOM if zoomed else LATENT if self.settings.view == "local" else LATENT_GLOBAL
                body = template.format(target=text)
            else:
                body = ANSWERING.format(question=text)
            prompts.append((images, (ZOOM_PREFIX if zoomed else "") + body))
        # nothing kept for the answer: ZoomEye asks about many views, and which one it answers on is
        # decided only at the end (keeping them would hold their caches and cost each call)
        probabilities = self.mllm.yes_probability(prompts, batch_size=self.config.verify_batch_size,
                                                  should_stop=should_stop, keep_prefixes=False)
        return [2.0 * (float(p) - 0.5) for p in probabilities]

    def _score(self, image: Image.Image, nodes: Sequence[Node], target: str, should_stop: Any) -> None:
        asks = [(n, kind, target) for n in nodes for kind in ("existence", "latent")]
        values = self._confidences(image, asks, should_stop)
        for index, node in enumerate(nodes):
            node.existence, node.latent = values[2 * index], values[2 * index + 1]

    # ---------------------------------------------------------- type 1
    def search(
        self, image: Image.Image, target: str, question: str, several: bool, should_stop: Any = None
    ) -> tuple[Node | None, list[Node]]:
        """Best-first search for one target: the deepest node whose answering
        confidence reached the (relaxed) threshold, or None; and the popped nodes."""
        s = self.settings
        root = build_tree(image.size, s.input_side)
        depth = min(tree_depth(root), s.depth_limit)
        force_bottom = several  # several targets: go on to the bottom of the tree
        skip_root = several and s.view == "local"
        limit, upper, decrements = 3 * depth, s.upper, list(s.decrements)
        queue, trace, candidates, reached_bottom = [root], [], [], False

        def priority(node: Node) -> float:
            w = depth_weight(node.depth, depth, s.bias)
            return w * node.existence + (1.0 - w) * node.latent

        while queue:
            node = queue.pop(0)
            trace.append(node)
            accepted = False
            if not (skip_root and node.depth == 0):
                (node.answering,) = self._confidences(image, [(node, "answering", question)], should_stop)
                accepted = node.answering >= upper
            if accepted:
                candidates.append(node)
                if not force_bottom or reached_bottom:
                    break
            elif len(trace) >= limit:  # relax: lower the threshold, accept the best popped so far
                upper -= decrements[0]
                if len(decrements) > 1:
                    decrements.pop(0)
                limit += 2
                sure = [n for n in trace if n.answering is not None and n.answering >= upper]
                candidates = [max(candidates + sure, key=lambda n: n.answering)] if candidates + sure else []
                if candidates or upper < s.lower:
                    break
            if not node.children or node.depth == depth:
                reached_bottom = True
                if force_bottom and candidates:
                    break
            else:
                self._score(image, node.children, target, should_stop)
                queue.extend(node.children)
            queue.sort(key=priority, reverse=True)  # stable: ties keep their order
        best = sorted(candidates, key=lambda n: -n.depth)[0] if candidates else None
        return best, trace

    # ---------------------------------------------------------- type 2
    def scan(self, image: Image.Image, target: str, should_stop: Any = None) -> list[Node]:
        """"All X": every node down to depth 2 at least as sure X is there as
        anything below it (and at least ``type2_threshold``)."""
        root = build_tree(image.size, self.settings.input_side, max_depth=self.settings.type2_depth)
        nodes: list[Node] = []

        def collect(node: Node) -> None:
            nodes.append(node)
            for child in node.children:
                collect(child)

        collect(root)
        values = self._confidences(image, [(n, "existence", target) for n in nodes], should_stop)
        for node, value in zip(nodes, values):
            node.existence = value
        chosen: list[Node] = []

        def post_order(node: Node) -> float:
            below = max([post_order(child) for child in node.children], default=-math.inf)
            if node.existence >= max(below, self.settings.type2_threshold):
                chosen.append(node)
            return max(below, node.existence)

        post_order(root)
        return chosen

    # ------------------------------------------------------------ answer
    def answer_inputs(self, image: Image.Image, nodes: Sequence[Node], text: str) -> tuple[list[Image.Image], str]:
        """The images and text of the final answer on the chosen nodes."""
        if not nodes or any(n.depth == 0 for n in nodes):
            return [image], text
        views = [patch_box(n, image.size, self.settings) for n in nodes]
        regions = merge_overlapping(views, MERGE_GAP, order="input")  # the first stays first (side by side)
        if self.settings.view == "local":
            union = union_box(regions)
            if len(regions) == 2 and max(union[2] - union[0], union[3] - union[1]) > SIDE_BY_SIDE_SPAN:
                return [side_by_side(image, regions, self.settings.input_side)], text
            return [crop(image, union)], text
        boxed, drawn = marked(image, regions)
        return [boxed, crop(boxed, drawn)], ZOOM_PREFIX + text

    # --------------------------------------------------------------- run
    def answer(self, run: Run) -> ZoomEyeResult:
        with run.stage("targets"):
            found = find_targets(run.mllm, run.question, run.targets, run.config, run.should_stop)
        notes: list[str] = []
        with run.stage("search"):
            chosen, visited = self.search_all(run.image, run.question, found, notes, run.should_stop)
        with run.stage("answer"):
            text, option = answer_on(run.mllm, run.question, run.options, run.config,
                                     lambda text: self.answer_inputs(run.image, chosen, text),
                                     should_stop=run.should_stop)
        return self.result(run, text, option, ZoomEyeResult, targets=list(found.names), notes=notes,
                           chosen=[n.xyxy for n in chosen if n.depth > 0],
                           visited=[n.xyxy for n in visited if n.depth > 0])

    def search_all(
        self, image: Image.Image, question: str, found: Any, notes: list[str], should_stop: Any = None
    ) -> tuple[list[Node], list[Node]]:
        """Every target searched (type 1) or scanned ("all X"): the chosen
        nodes and the popped ones."""
        names, s = list(found.names), self.settings
        counted = found.question_type == 2  # "all X": every target is scanned, not searched
        several = len(names) > 1 or counted
        chosen: list[Node] = []
        visited: list[Node] = []
        if len(names) >= 2 and s.view == "global_local" and not counted:  # clear in the whole image?
            asks = [(Node((0, 0, *image.size), 0), "answering", APPEARANCE.format(target=t)) for t in names]
            if any(c >= s.upper for c in self._confidences(image, asks, should_stop)):
                notes.append("a target is clear in the whole image: answered on it (ZoomEye's pre-filter)")
                names = []
        for target in names:
            if counted:
                chosen += self.scan(image, target, should_stop)
                continue
            asked = question if not several else APPEARANCE.format(target=target)
            best, trace = self.search(image, target, asked, several, should_stop)
            visited += trace
            if best is not None:
                chosen.append(best)
        return chosen, visited


def side_by_side(image: Image.Image, regions: Sequence[Box], side: int) -> Image.Image:
    """Two far-apart regions, each resized to ``side``, next to each other on
    a mean-grey canvas, the second shifted by half their centres' height
    difference (local models' final view)."""
    canvas = Image.new("RGB", (2 * side, 2 * side), (122, 116, 104))
    centres = [(b[1] + b[3]) / 2 for b in regions]
    shift = int(max(-side, min(side, (centres[1] - centres[0]) / 2)))
    top = side // 2
    for index, region in enumerate(regions[:2]):
        tile = crop(image, region).resize((side, side), Image.Resampling.BICUBIC)
        y = top + (shift if index == 1 else 0)
        canvas.paste(tile, (index * side, max(0, min(side, y))))
    return canvas
