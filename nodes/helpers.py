"""Helper nodes: ROI masks for editing, crops, drawings, and the whole
pipeline in one node."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..focus_engine.config import FocusConfig
from . import bridge
from .regions import region_outputs, region_tips
from .common import (
    BOXES_JSON_TIP, DEFAULT_MASK_SHAPE, GATE_IN, GATE_JSON_TIP, IMAGE_IN, MASK_SHAPE_IN, MLLM_IN, OPTIONS_IN,
    PRESET_IN, QUESTION_IN, ROIS_IN, TARGETS_OVERRIDE_IN, VERIFY_STOP_IN, RoiBatch, boxes_json, check_batch,
    focus_method, gate_json, image_items, mask_tip, pad_to_common_size, parse_options, finish_with, pil_image,
    preset_settings, region_masks, rois_in, run_per_image, to_image_tensor, to_mask_tensor, use_mllm,
)

MODES = ["best", "all", "top_n", "selected"]


def _chosen(rois: RoiBatch, index: int, mode: str, top_n: int) -> list[Any]:
    ranked = rois.per_image[index]
    if mode == "all":
        return list(ranked)
    if mode == "top_n":
        return list(ranked[:top_n])
    if mode == "selected" and rois.selected is not None:
        return list(rois.selected[index])
    return list(ranked[:1])


class FocusROIsToMask:
    DESCRIPTION = (
        "A MASK of the ROIs at the image's size (their boxes, or where their relevance is high), grown and "
        "feathered in pixels, for mask and inpaint nodes."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "to_mask"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("1 inside the chosen ROIs, 0 outside, feathered edges; one mask per image.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "rois": ROIS_IN,
                "mode": (MODES, {"default": "best", "tooltip": (
                    "best: the top ROI; all: every ROI; top_n: the first n; selected: those the answer uses.")}),
                "top_n": ("INT", {"default": 3, "min": 1, "max": 100, "tooltip": "How many ROIs for top_n."}),
                "grow": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": (
                    "Grow the mask by this many pixels on every side.")}),
                "feather": ("INT", {"default": 0, "min": 0, "max": 512, "tooltip": "Blur the mask edges (pixels)."}),
            },
            "optional": {
                "mask_shape": MASK_SHAPE_IN,
            },
        }

    def to_mask(self, rois: RoiBatch, mode: str, top_n: int, grow: int, feather: int,
                mask_shape: str = DEFAULT_MASK_SHAPE) -> tuple[Any]:
        rois = rois_in(rois)
        chosen = [_chosen(rois, index, mode, top_n) for index in range(len(rois.image_sizes))]
        return (rois.masks(chosen, mask_shape, grow=grow, feather=feather),)


class FocusCropROI:
    DESCRIPTION = "Crops one ROI (with context padding) out of each image, and gives its MASK at the image's size."
    CATEGORY = "FOCUS"
    FUNCTION = "crop"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("crop", "mask")
    OUTPUT_TOOLTIPS = (
        "The crop of each image (padded with black to a common size in a batch).",
        "1 inside the cropped region, at the image's size.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": IMAGE_IN,
                "rois": ROIS_IN,
                "index": ("INT", {"default": 0, "min": 0, "max": 1000, "tooltip": "Which ROI: 0 = the best."}),
                "padding": ("INT", {"default": 32, "min": 0, "max": 4096, "tooltip": "Context kept around the ROI (pixels)."}),
            }
        }

    def crop(self, image: Any, rois: RoiBatch, index: int, padding: int) -> tuple[Any, Any]:
        from ..focus_engine.boxes import grow_box
        from ..focus_engine.masks import box_mask

        items, rois = image_items(image), rois_in(rois)
        check_batch("the ROI list", len(rois.per_image), len(items))
        crops, masks = [], []
        for i, item in enumerate(items):
            if index >= len(rois.per_image[i]):
                raise ValueError(f"FOCUS: image {i} has {len(rois.per_image[i])} ROIs; index {index} does not exist")
            box = grow_box(rois.per_image[i][index].box, padding, rois.image_sizes[i])
            x0, y0, x1, y1 = box
            crops.append(item[y0:y1, x0:x1].cpu().numpy())
            masks.append(box_mask(rois.image_sizes[i], [box]))
        return to_image_tensor(pad_to_common_size(crops)), to_mask_tensor(masks)


class FocusDrawROIs:
    DESCRIPTION = "Draws the ROIs on the images: the top proposals thin in yellow, the selected ones thick in red."
    CATEGORY = "FOCUS"
    FUNCTION = "draw"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The images with the boxes drawn.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": IMAGE_IN,
                "rois": ROIS_IN,
                "top_n": ("INT", {"default": 10, "min": 0, "max": 200, "tooltip": "How many proposals to draw."}),
            }
        }

    def draw(self, image: Any, rois: RoiBatch, top_n: int) -> tuple[Any]:
        from ..focus_engine.render import draw_rois

        items, rois = image_items(image), rois_in(rois)
        check_batch("the ROI list", len(rois.per_image), len(items))
        pictures = []
        for i, item in enumerate(items):
            selected = rois.selected[i] if rois.selected is not None else []
            pictures.append(np.asarray(draw_rois(pil_image(item), rois.per_image[i], selected, max_proposals=top_n)))
        return (to_image_tensor(pictures),)


class FocusVQA:
    DESCRIPTION = (
        "The whole FOCUS pipeline in one node: targets, relevance maps, ROIs, verification and the answer on the "
        "crop. Outputs the answer, the MASK of the ROIs the answer used, and a preview (heatmap, ROIs, crop). "
        "With the gate on, a confident plain answer on the whole image is kept and nothing is searched."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "run"
    # new outputs go last: saved workflows link outputs by index
    RETURN_TYPES = ("STRING", "MASK", "IMAGE", "STRING", "STRING", "BBOX", "SEGS", "BOUNDING_BOX")
    RETURN_NAMES = ("answer", "mask", "preview", "boxes_json", "gate", "bboxes", "segs", "bounding_boxes")
    OUTPUT_TOOLTIPS = (
        "The answer (one line per image).",
        mask_tip("the ROIs the answer used"),
        "The first image's heatmap, ROIs and answer crop side by side.",
        BOXES_JSON_TIP,
        GATE_JSON_TIP,
        *region_tips("The ROIs the answer used"),
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "mllm": MLLM_IN,
                "image": IMAGE_IN,
                "question": QUESTION_IN,
                "n_steps": ("INT", {"default": FocusConfig.n_steps, "min": 1, "max": 32, "tooltip": (
                    "At most this many ROIs verified per target, in relevance order, stopping at the first the "
                    "model is sure of (verify_stop; with it off, as in the paper preset, all of them at once, then "
                    "on until a Yes); 1 = the first ROI, unverified (default preset).")}),
            },
            "optional": {
                "options": OPTIONS_IN,
                "targets_override": TARGETS_OVERRIDE_IN,
                "gate": GATE_IN,
                "preset": PRESET_IN,
                "verify_stop": VERIFY_STOP_IN,
                "mask_shape": MASK_SHAPE_IN,
            },
        }

    def run(self, mllm: Any, image: Any, question: str, n_steps: int, options: str = "", targets_override: str = "",
            gate: float = 0.0, preset: str = "default", verify_stop: float = -1.0,
            mask_shape: str = DEFAULT_MASK_SHAPE):
        from ..focus_engine.render import summary_figure

        handle, mllm = mllm, use_mllm(mllm)
        pictures = [pil_image(item) for item in image_items(image)]
        choices = parse_options(options)
        method = focus_method(mllm, f"focus-gated:{gate}" if gate else "focus", n_steps=n_steps,
                              **preset_settings(preset, verify_stop))
        results = run_per_image(len(pictures), lambda i: method.run(
            pictures[i], question, options=choices, targets=targets_override.strip() or None,
            should_stop=bridge.interrupted,
        ))
        finish_with(handle)
        sizes, selected = [r.image_size for r in results], [r.selected for r in results]
        masks = region_masks(selected, sizes, mask_shape, [r.relevance for r in results])
        preview = np.asarray(summary_figure(pictures[0], results[0]))
        answers = "\n".join(" ".join(r.answer.split()) for r in results)
        return (answers, masks, to_image_tensor([preview]),
                boxes_json([r.rois for r in results], selected, [r.config for r in results]),
                gate_json([r.gate for r in results]),
                *region_outputs(selected, sizes, image))
