"""The five FOCUS stage nodes after Load MLLM; each calls one engine stage."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..focus_engine.config import RELEVANCE_SOURCES, FocusConfig
from . import bridge
from .regions import region_outputs, region_tips
from .common import (
    ANSWER_GATE_IN, BOXES_JSON_TIP, DEFAULT_MASK_SHAPE, GATE_JSON_TIP, IMAGE_IN, MASK_SHAPE_IN, MLLM_IN, OPTIONS_IN,
    PRESET_IN, QUESTION_IN, ROIS_IN, TARGETS_IN, TARGETS_OVERRIDE_IN, VERIFY_STOP_IN, RelevanceBatch, RoiBatch,
    boxes_json, check_batch, focus_config, gate_json, image_items, mask_tip, finish_with, pad_to_common_size,
    parse_options, pil_image, preset_settings, relevance_in, rois_in, run_per_image, targets_in, to_image_tensor,
    to_mask_tensor, use_mllm,
)


class FocusExtractTargets:
    DESCRIPTION = (
        "Stage 1: asks the model (text only, a few worked examples) which objects the question needs. "
        "'all cars' marks a counting question. Give targets yourself to skip the model."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "extract"
    RETURN_TYPES = ("FOCUS_TARGETS", "STRING")
    RETURN_NAMES = ("targets", "targets_text")
    OUTPUT_TOOLTIPS = ("Targets and question type for the next FOCUS nodes.", "The targets, comma-separated.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "mllm": MLLM_IN,
                "question": QUESTION_IN,
            },
            "optional": {
                "targets_override": TARGETS_OVERRIDE_IN,
            },
        }

    def extract(self, mllm: Any, question: str, targets_override: str = "") -> tuple[Any, str]:
        from ..focus_engine.inputs import check_question
        from ..focus_engine.targets import check_extraction_fits, find_targets

        mllm = use_mllm(mllm)
        given = targets_override.strip() or None
        config = focus_config(mllm)

        def extract(_: int) -> Any:
            if given:
                return find_targets(mllm, question, given, config)
            asked = check_question(question)
            check_extraction_fits(mllm, asked, config)
            return find_targets(mllm, asked, None, config, should_stop=bridge.interrupted)

        (found,) = run_per_image(1, extract)
        return found, ", ".join(found.names)


class FocusRelevanceMap:
    DESCRIPTION = (
        "Stage 2: one prefill per target and image; the relevance map is the cosine similarity of the target "
        "words' value vectors with the image tokens' (from the KV cache). Outputs the maps, a heatmap MASK at "
        "image size (the maximum over targets) and an overlay preview."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "relevance"
    RETURN_TYPES = ("FOCUS_RELEVANCE", "MASK", "IMAGE")
    RETURN_NAMES = ("relevance", "heatmap", "preview")
    OUTPUT_TOOLTIPS = (
        "Relevance maps for FOCUS · Propose ROIs.",
        "Heatmap at the image's size, 0..1 (maximum over the targets).",
        "The image with the heatmap blended over it.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "mllm": MLLM_IN,
                "image": IMAGE_IN,
                "targets": TARGETS_IN,
                "layer_start": ("INT", {"default": 0, "min": 0, "max": 512, "tooltip": (
                    "First decoder layer summed (0-based). 0 and 0: the model family's own range (the paper's, where it "
                    "gives one).")}),
                "layer_end": ("INT", {"default": 0, "min": 0, "max": 512, "tooltip": (
                    "End of the layer range (exclusive); 0 = the family default.")}),
                "source": (list(RELEVANCE_SOURCES), {"default": FocusConfig.source, "tooltip": (
                    "values: FOCUS. keys / random: the paper's ablations.")}),
            },
            "optional": {
                "preset": PRESET_IN,
            },
        }

    def relevance(self, mllm: Any, image: Any, targets: Any, layer_start: int, layer_end: int, source: str,
                  preset: str = "default"):
        from ..focus_engine.relevance import relevance_maps
        from ..focus_engine.render import heatmap_overlay

        mllm, targets = use_mllm(mllm), targets_in(targets)
        config = focus_config(mllm, source=source, layers=None if layer_end == 0 else (layer_start, layer_end),
                              **preset_settings(preset))
        pictures = [pil_image(item) for item in image_items(image)]
        maps = run_per_image(len(pictures), lambda i: relevance_maps(
            mllm, pictures[i], targets.names, config, should_stop=bridge.interrupted))
        heat, previews = [], []
        for picture, per_target in zip(pictures, maps):
            heat.append(np.maximum.reduce([m.to_image() for m in per_target.values()]))
            previews.append(np.asarray(heatmap_overlay(picture, next(iter(per_target.values())))))
        return RelevanceBatch(maps, config), to_mask_tensor(heat), to_image_tensor(previews)


class FocusProposeROIs:
    DESCRIPTION = (
        "Stage 3a: anchors at the map's peaks, each grown into a box while the mean relevance stays high, then "
        "non-maximum suppression. Pure geometry, no model call. Outputs the ROIs and a MASK of all proposals."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "propose"
    # new outputs go last: saved workflows link outputs by index
    RETURN_TYPES = ("FOCUS_ROIS", "MASK", "STRING", "BBOX", "SEGS", "BOUNDING_BOX")
    RETURN_NAMES = ("rois", "proposals_mask", "boxes_json", "bboxes", "segs", "bounding_boxes")
    OUTPUT_TOOLTIPS = ("The proposals, best anchor first.",
                       mask_tip("the proposals"),
                       BOXES_JSON_TIP, *region_tips("Every proposal"))

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "relevance": ("FOCUS_RELEVANCE", {"tooltip": "Maps from FOCUS · Relevance Map."}),
                "anchors": ("INT", {"default": 0, "min": 0, "max": 200, "tooltip": (
                    "Anchor cells per target; 0 = the paper's rule (fewer anchors for a small verification budget).")}),
                "spacing": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 50.0, "step": 0.5, "tooltip": (
                    "Minimum distance between anchors, in grid cells. -1: the preset's, from Relevance Map "
                    f"({FocusConfig.anchor_spacing:g} in default; the paper's 2 on V*Bench for LLaVA-1.5 and "
                    "for OneVision).")}),
                "min_size": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": (
                    "Initial box side in cells; 0 = the model family's default.")}),
                "max_size": ("INT", {"default": 0, "min": 0, "max": 128, "tooltip": (
                    "Largest box side in cells; 0 = the model family's default.")}),
                "threshold": ("FLOAT", {"default": FocusConfig.expand_threshold, "min": 0.0, "max": 1.0, "step": 0.05,
                                        "tooltip": (
                    "A box grows while the mean relevance inside stays at least this.")}),
                "nms_iou": ("FLOAT", {"default": FocusConfig.nms_iou, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": (
                    "Overlapping proposals above this IoU are suppressed.")}),
            },
            "optional": {
                "mask_shape": MASK_SHAPE_IN,
            },
        }

    def propose(self, relevance: Any, anchors: int, spacing: float, min_size: int, max_size: int,
                threshold: float, nms_iou: float, mask_shape: str = DEFAULT_MASK_SHAPE):
        import dataclasses

        from ..focus_engine.rois import propose_for_maps

        relevance = relevance_in(relevance)
        base = relevance.config  # resolved for the model; a widget at 0 keeps its value
        s_min, s_max = min_size or base.s_min, max_size or base.s_max
        if s_max < s_min:
            raise ValueError(f"FOCUS: max_size {s_max} is smaller than min_size {s_min}")
        config = dataclasses.replace(base, n_anchors=anchors or base.n_anchors, s_min=s_min, s_max=s_max,
                                     anchor_spacing=spacing if spacing >= 0 else base.anchor_spacing,
                                     expand_threshold=threshold, nms_iou=nms_iou)
        rois = run_per_image(len(relevance.maps), lambda i: propose_for_maps(relevance.maps[i].values(), config))
        sizes = [next(iter(m.values())).image_size for m in relevance.maps]
        proposals = RoiBatch(rois, sizes, maps=relevance.maps)
        return (proposals, proposals.masks(rois, mask_shape), boxes_json(rois, configs=config),
                *region_outputs(rois, sizes))


class FocusRankROIs:
    DESCRIPTION = (
        "Stage 3b: asks the model 'Is there a {target} in the image?' about the crops of each target's ROIs, "
        "in relevance order, one per target per step, until one is sure (verify_stop; at most n_steps), or, with "
        "verify_stop off (the paper preset), the first n_steps at once; re-ranks them by the Yes confidence; with "
        "overrun, keeps checking past n_steps until one says Yes (the paper's). Outputs ranked ROIs, the MASK of "
        "the selected ones and the best crop."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "rank"
    # new outputs go last: saved workflows link outputs by index
    RETURN_TYPES = ("FOCUS_ROIS", "MASK", "IMAGE", "STRING", "BBOX", "SEGS", "BOUNDING_BOX")
    RETURN_NAMES = ("rois", "selected_mask", "best_crop", "boxes_json", "bboxes", "segs", "bounding_boxes")
    OUTPUT_TOOLTIPS = (
        "The ROIs re-ranked by verification confidence (selected ones marked for the answer).",
        mask_tip("the ROIs the answer will use"),
        "The best ROI's crop of each image (padded to a common size in a batch).",
        BOXES_JSON_TIP,
        *region_tips("The selected ROIs"),
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "mllm": MLLM_IN,
                "image": IMAGE_IN,
                "rois": ROIS_IN,
                "targets": TARGETS_IN,
                "n_steps": ("INT", {"default": FocusConfig.n_steps, "min": 1, "max": 32, "tooltip": (
                    "At most this many ROIs verified per target, in relevance order, stopping at the first the model "
                    "is sure of (verify_stop; with it off, as in the paper preset, all of them at once); 1 without "
                    "overrun skips verification (the no-ranking ablation).")}),
                "overrun": ("BOOLEAN", {"default": FocusConfig.overrun, "tooltip": (
                    "If none of the first n_steps ROIs says Yes, verify further ones until one does (the paper's), "
                    f"at most {FocusConfig.max_overrun} more per target (our cap; the paper preset: every "
                    "proposal at most).")}),
            },
            "optional": {
                "preset": PRESET_IN,
                "verify_stop": VERIFY_STOP_IN,
                "mask_shape": MASK_SHAPE_IN,
            },
        }

    def rank(self, mllm: Any, image: Any, rois: Any, targets: Any, n_steps: int, overrun: bool,
             preset: str = "default", verify_stop: float = -1.0, mask_shape: str = DEFAULT_MASK_SHAPE):
        from ..focus_engine.images import crop
        from ..focus_engine.ranking import rank_rois, verification_steps

        mllm, rois, targets = use_mllm(mllm), rois_in(rois), targets_in(targets)
        pictures = [pil_image(item) for item in image_items(image)]
        check_batch("the ROI list", len(rois.per_image), len(pictures))
        config = focus_config(mllm, n_steps=n_steps, overrun=overrun, **preset_settings(preset, verify_stop))
        bar = bridge.progress_bar(len(pictures) * verification_steps(config))

        def one(index: int) -> list[Any]:
            if not rois.per_image[index]:
                raise ValueError(f"FOCUS: image {index} has no ROI to rank; check the relevance map and proposals")
            return rank_rois(mllm, pictures[index], rois.per_image[index], config,
                             progress=lambda step, total: bar.update(1), should_stop=bridge.interrupted,
                             verify_all=targets.question_type == 2)

        ranked = RoiBatch(run_per_image(len(pictures), one, bar=bar), rois.image_sizes, maps=rois.maps)
        ranked.selected = [ranked.selection(i, targets.question_type, config) for i in range(len(pictures))]
        selected = ranked.selected
        crops = [np.asarray(crop(picture, sel[0].box)) for picture, sel in zip(pictures, selected)]
        return (ranked, ranked.masks(selected, mask_shape), to_image_tensor(pad_to_common_size(crops)),
                boxes_json(ranked.per_image, selected, config), *region_outputs(selected, rois.image_sizes, image))


class FocusAnswer:
    DESCRIPTION = (
        "Stage 4: answers the question on the selected ROI crop (union or canvas for several targets; "
        "all confident ROIs for counting questions). Multiple-choice options, one per line, are lettered A, B, ... "
        "With the gate on, a confident plain answer on the whole image is kept instead (the search before this node "
        "has already run: this gate saves no time; FOCUS · VQA's does)."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "answer"
    RETURN_TYPES = ("STRING", "IMAGE", "STRING")
    RETURN_NAMES = ("answer", "annotated", "gate")
    OUTPUT_TOOLTIPS = ("The answer (one line per image of the batch).", "The image with the ROIs drawn.",
                       GATE_JSON_TIP)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "mllm": MLLM_IN,
                "image": IMAGE_IN,
                "question": QUESTION_IN,
                "rois": ROIS_IN,
                "targets": TARGETS_IN,
            },
            "optional": {
                "options": OPTIONS_IN,
                "gate": ANSWER_GATE_IN,
                "preset": PRESET_IN,
            },
        }

    def answer(self, mllm: Any, image: Any, question: str, rois: Any, targets: Any, options: str = "",
               gate: float = 0.0, preset: str = "default"):
        from ..focus_engine.gate import answer_with_gate
        from ..focus_engine.inputs import check_options, check_question
        from ..focus_engine.methods.base import check_prompts_fit
        from ..focus_engine.render import draw_rois

        handle, mllm, rois, targets = mllm, use_mllm(mllm), rois_in(rois), targets_in(targets)
        items = image_items(image)
        check_batch("the ROI list", len(rois.per_image), len(items))
        config = focus_config(mllm, gate_threshold=gate or None, **preset_settings(preset))

        def one(index: int) -> tuple[str, np.ndarray, Any]:
            pil = pil_image(items[index])
            selected = rois.selection(index, targets.question_type, config)
            asked, choices = check_question(question), check_options(parse_options(options))
            check_prompts_fit(mllm, pil, asked, choices, config, extracting=False)
            result, decision = answer_with_gate(mllm, pil, asked, choices, selected, config,
                                                should_stop=bridge.interrupted, question_type=targets.question_type)
            shown = [] if result.view.mode == "full" else selected
            picture = np.asarray(draw_rois(pil, rois.per_image[index], shown))
            return result.text, picture, decision.to_json() if decision is not None else None

        results = run_per_image(len(items), one)
        finish_with(handle)
        # one line per image: a multi-line answer is folded so lines map to images
        lines = [" ".join(text.split()) for text, _, _ in results]
        return ("\n".join(lines), to_image_tensor([picture for _, picture, _ in results]),
                gate_json([decision for _, _, decision in results]))
