"""Stage 4: choose the ROIs to answer on, compose the view, and answer.

Type-1 questions answer on the best ROI of their target; with several
targets, on the crop of the union of their best ROIs, or, when they lie far
apart, on a canvas holding each crop at its relative position. Type-2
questions use every ROI whose confidence exceeds the family's threshold,
overlapping ones merged. With ``answer_crops="per_target"`` (LLaVA-OneVision,
as the paper) each target's region is its own image instead of their union;
with ``answer_with_global`` (LLaVA-OneVision) the model first gets the whole
image with the focus regions drawn, then the zoomed view(s).
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from PIL import Image

from .boxes import Box, merge_overlapping, union_box
from .config import FocusConfig
from .errors import FocusInputError
from .images import crop
from .prompts import format_question
from .reading import parse_option
from .ranking import best_per_target
from .rois import ROI

CANVAS_FILL = (127, 127, 127)
MAX_ANSWER_CROPS = 4
"""At most this many regions are shown one image each (``answer_crops=
"per_target"``); more (a counting question's) are shown as their union."""
GLOBAL_MAX_SIDE = 2048
"""Long side of the marked global image of the interleaved prompt."""
RECTANGLE_COLOURS = {
    "red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 220, 0),
    "magenta": (255, 0, 255), "cyan": (0, 220, 220), "orange": (255, 140, 0), "white": (255, 255, 255),
}
"""Rectangle colours for the interleaved prompt, in order of preference."""


@dataclass
class AnswerView:
    """What the final answer was computed on."""

    mode: str  # "full" | "crop" | "canvas" | "crops" (one image per region)
    boxes: list[Box] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)

    @property
    def image(self) -> Image.Image:
        """The (first) image the answer looks at besides the global one."""
        return self.images[0]

    def to_json(self) -> dict:
        return {"mode": self.mode, "boxes": [list(b) for b in self.boxes]}


@dataclass
class Answer:
    text: str
    option: str | None  # the chosen option's letter for multiple-choice questions
    view: AnswerView


def select_rois(ranked: Sequence[ROI], question_type: int, config: FocusConfig) -> list[ROI]:
    """The ROIs the answer looks at (see module docstring)."""
    if question_type == 2:
        threshold = config.type2_threshold if config.type2_threshold is not None else 0.5
        confident = [r for r in ranked if r.confidence is not None and r.confidence > threshold]
        if confident:
            return confident
    return list(best_per_target(ranked).values())


def compose_view(image: Image.Image, selected: Sequence[ROI], config: FocusConfig,
                 question_type: int = 1) -> AnswerView:
    """Crop / union / canvas of the selected ROIs, or one crop per region
    (``config.answer_crops``); the whole image if none. Several regions go on
    a canvas when they lie far apart (``far_apart``), or, with
    ``count_on_canvas``, when they are a counting question's."""
    if not selected:
        return AnswerView(mode="full", images=[image])
    boxes = merge_overlapping([r.box for r in selected])
    if len(boxes) == 1:
        return AnswerView(mode="crop", boxes=boxes, images=[crop(image, boxes[0])])
    if config.answer_crops == "per_target" and len(boxes) <= MAX_ANSWER_CROPS:
        return AnswerView(mode="crops", boxes=boxes, images=[crop(image, box) for box in boxes])
    if not far_apart(boxes, config) and not (question_type == 2 and config.count_on_canvas):
        union = union_box(boxes)
        return AnswerView(mode="crop", boxes=[union], images=[crop(image, union)])
    return AnswerView(mode="canvas", boxes=boxes, images=[paste_on_canvas(image, boxes, config.far_apart_px)])


def far_apart(boxes: Sequence[Box], config: FocusConfig) -> bool:
    """Whether the regions lie further apart than ``far_apart_px``: the long
    side of their union box (``far_apart_measure="union"``), or the largest
    distance between two of their centres (``"distance"``)."""
    if config.far_apart_measure == "union":
        union = union_box(boxes)
        return max(union[2] - union[0], union[3] - union[1]) > config.far_apart_px
    centres = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes]
    return any(math.dist(a, b) > config.far_apart_px for i, a in enumerate(centres) for b in centres[i + 1:])


def paste_on_canvas(image: Image.Image, boxes: Sequence[Box], span: int) -> Image.Image:
    """Each box's crop at full resolution on an empty canvas; the gaps between
    them shrunk so the layout spans about ``span`` px, relative order kept."""
    ux0, uy0, ux1, uy1 = union_box(boxes)
    scale = min(1.0, span / max(ux1 - ux0, uy1 - uy0))
    placed = [((int((x0 - ux0) * scale), int((y0 - uy0) * scale)), (x0, y0, x1, y1)) for x0, y0, x1, y1 in boxes]
    width = max(px + (b[2] - b[0]) for (px, _), b in placed)
    height = max(py + (b[3] - b[1]) for (_, py), b in placed)
    canvas = Image.new("RGB", (width, height), CANVAS_FILL)
    for position, box in placed:
        canvas.paste(crop(image, box), position)
    return canvas


def rectangle_colour(question: str) -> tuple[str, tuple[int, int, int]]:
    """The first rectangle colour the question does not mention (a red box
    around a region would bias "what colour is ..." towards red)."""
    words = set(re.findall(r"[a-z]+", question.lower()))
    for name, rgb in RECTANGLE_COLOURS.items():
        if name not in words:
            return name, rgb
    return "red", RECTANGLE_COLOURS["red"]


def interleaved_inputs(
    image: Image.Image, view: AnswerView, question_text: str, raw_question: str
) -> tuple[list[Image.Image], str]:
    """Global-local models: the whole image with the focus region(s) drawn,
    then the zoomed view, then the question."""
    from PIL import ImageDraw

    name, rgb = rectangle_colour(raw_question)
    # the model sees the global image small anyway; drawing on a copy of at
    # most GLOBAL_MAX_SIDE px keeps huge inputs cheap
    scale = min(1.0, GLOBAL_MAX_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    marked = image.resize(size, Image.Resampling.BILINEAR) if scale < 1.0 else image.copy()
    draw = ImageDraw.Draw(marked)
    line = max(2, round(max(size) / 250))
    for box in view.boxes:
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=rgb, width=line)
    regions = "regions" if len(view.boxes) > 1 else "region"
    if len(view.images) == 1:
        zoomed = f"The second image is the zoomed-in view of the focus {regions}."
    else:  # one image per region, in the order of the boxes
        zoomed = f"The next {len(view.images)} images are zoomed-in views of the focus regions, one per rectangle."
    text = f"This is the main image; the {name} rectangle marks the focus {regions}. {zoomed}\n{question_text}"
    return [marked, *view.images], text


def answer_question(
    mllm: Any,
    image: Image.Image,
    question: str,
    options: Sequence[str] | None,
    selected: Sequence[ROI],
    config: FocusConfig,
    *,
    should_stop: Callable[[], bool] | None = None,
    question_type: int = 1,
) -> Answer:
    """Stage 4: answer ``question`` (checked, see ``inputs``) about ``image``
    (RGB) on the view composed from ``selected`` (``question_type`` 2: a
    counting question's regions, see ``compose_view``)."""
    if not selected and not config.ask_on_full_image_if_no_roi:
        raise FocusInputError("no ROI to answer on; propose ROIs first or allow answering on the full image")
    view = compose_view(image, selected, config, question_type)

    def shown(text: str) -> tuple[list[Image.Image], str]:
        if config.answer_with_global and view.mode != "full":
            return interleaved_inputs(image, view, text, question)
        return list(view.images), text

    text, option = answer_on(mllm, question, options, config, shown, should_stop=should_stop)
    return Answer(text=text, option=option, view=view)


def answer_on(
    mllm: Any,
    question: str,
    options: Sequence[str] | None,
    config: FocusConfig,
    view: Callable[[str], tuple[list[Image.Image], str]],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[str, str | None]:
    """The answer and its option letter, chosen as ``config.answer_scoring``
    says: ``generate`` (greedy, the multiple-choice prompt, the reply read by
    ``parse_option``) or ``likelihood`` (the bare question, each option scored
    as the reply, lowest loss wins: V*Bench's evaluation). ``view(text)``
    gives the images and the text the model sees for a question text (a
    method's own composition: a crop, a marked global image and a crop...)."""
    if config.answer_scoring == "likelihood" and options:
        images, text = view(question)
        best = likeliest_option(mllm, text, options, images)
        return options[best], string.ascii_uppercase[best]
    images, text = view(format_question(question, options))
    reply = mllm.generate(text, images=images, max_new_tokens=config.answer_max_new_tokens, should_stop=should_stop)
    return reply, parse_option(reply, options)


def likeliest_option(mllm: Any, text: str, options: Sequence[str], images: Sequence[Image.Image]) -> int:
    """The index of the option whose reply to ``text`` about ``images`` has
    the lowest loss (V*Bench's "logits matching")."""
    losses = mllm.option_losses(text, options, images=images)
    return min(range(len(options)), key=losses.__getitem__)
