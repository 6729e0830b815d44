"""FOCUS · Find: where the objects are, verified, and no answer: the regions
for mask, inpaint and detection nodes ("mask the red car")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..focus_engine.config import FocusConfig
from . import bridge
from .common import (
    BOXES_JSON_TIP, DEFAULT_MASK_SHAPE, IMAGE_IN, MASK_SHAPE_IN, MLLM_IN, PRESET_IN, VERIFY_STOP_IN, RoiBatch,
    boxes_json, focus_method, finish_with, image_items, mask_tip, pad_to_common_size, pil_image, preset_settings,
    run_per_image, to_image_tensor, use_mllm,
)
from .regions import region_outputs, region_tips


class FocusFind:
    DESCRIPTION = (
        "Finds the objects you name (or those a question needs) and gives their regions, each verified by the "
        "model, with no answer to pay for: the MASK, BBOX, SEGS and core BOUNDING_BOX of the regions, their "
        "confidences as JSON, and the ROIs for the other FOCUS nodes."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "find"
    RETURN_TYPES = ("MASK", "BBOX", "SEGS", "BOUNDING_BOX", "STRING", "IMAGE", "FOCUS_ROIS")
    RETURN_NAMES = ("mask", "bboxes", "segs", "bounding_boxes", "regions_json", "preview", "rois")
    OUTPUT_TOOLTIPS = (
        mask_tip("the found regions"),
        *region_tips("The found regions"),
        "Every ROI with its verification confidence; the found ones have selected true. " + BOXES_JSON_TIP,
        "Each image with its ROIs drawn (the found ones in red).",
        "The ROIs, ranked, the found ones selected: for ROIs to Mask, Crop ROI and Draw ROIs.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "mllm": MLLM_IN,
                "image": IMAGE_IN,
                "objects": ("STRING", {"default": "", "tooltip": (
                    "What to find, comma-separated (e.g. 'red car, all people'). Empty: the objects the "
                    "question needs, named by the model.")}),
                "n_steps": ("INT", {"default": FocusConfig.n_steps, "min": 1, "max": 32, "tooltip": (
                    "At most this many candidate regions verified per object, in relevance order, stopping at "
                    "the first the model is sure of; 1 = the most relevant one, unverified.")}),
            },
            "optional": {
                "question": ("STRING", {"multiline": True, "default": "", "tooltip": (
                    "Used when objects is empty: the model names the objects this question needs.")}),
                "preset": PRESET_IN,
                "verify_stop": VERIFY_STOP_IN,
                "mask_shape": MASK_SHAPE_IN,
            },
        }

    def find(self, mllm: Any, image: Any, objects: str, n_steps: int, question: str = "",
             preset: str = "default", verify_stop: float = -1.0, mask_shape: str = DEFAULT_MASK_SHAPE
             ) -> tuple[Any, ...]:
        from ..focus_engine.errors import FocusInputError
        from ..focus_engine.render import draw_rois

        objects, question = objects.strip(), question.strip()
        if not objects and not question:
            raise FocusInputError("FOCUS · Find needs the objects to find (e.g. 'red car') or a question to take "
                                  "them from; both are empty")
        handle, mllm = mllm, use_mllm(mllm)
        pictures = [pil_image(item) for item in image_items(image)]
        method = focus_method(mllm, "focus-find", n_steps=n_steps, **preset_settings(preset, verify_stop))
        # with objects given the question only has to fit the prompts: it is never asked
        asked = question or f"Where is the {objects}?"
        results = run_per_image(len(pictures), lambda i: method.run(
            pictures[i], asked, targets=objects or None, should_stop=bridge.interrupted))
        finish_with(handle)
        sizes = [r.image_size for r in results]
        selected = [r.selected for r in results]
        previews = [np.asarray(draw_rois(p, r.rois, r.selected, max_proposals=5)) for p, r in zip(pictures, results)]
        found = RoiBatch([r.rois for r in results], sizes, selected, maps=[r.relevance for r in results])
        return (found.masks(selected, mask_shape), *region_outputs(selected, sizes, image),
                boxes_json([r.rois for r in results], selected, [r.config for r in results]),
                to_image_tensor(pad_to_common_size(previews)), found)
