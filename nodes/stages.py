"""The five FOCUS stage nodes after Load MLLM; each calls one engine stage."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import bridge
from .common import RelevanceBatch, RoiBatch, boxes_json, check_batch, image_items, pad_to_common_size
from .common import run_per_image, to_image_tensor, to_mask_tensor

BOXES_JSON_TIP = (
    'The ROIs as JSON, one entry per image: [{"image": 0, "rois": [{"box": [x0, y0, x1, y1], "target", "score", '
    '"confidence", "selected"}]}], boxes in original-image pixels (right/bottom exclusive).'
)
MLLM_IN = ("FOCUS_MLLM", {"tooltip": "The model from FOCUS · Load MLLM."})
IMAGE_IN = ("IMAGE", {"tooltip": "The image batch (the same batch through the whole FOCUS chain)."})
TARGETS_IN = ("FOCUS_TARGETS", {"tooltip": "The objects to look for, from FOCUS · Extract Targets."})
ROIS_IN = ("FOCUS_ROIS", {"tooltip": "Regions of interest from FOCUS · Propose ROIs or Rank ROIs."})
QUESTION_IN = ("STRING", {"multiline": True, "default": "", "tooltip": "The question about the image."})
OPTIONS_IN = ("STRING", {"multiline": True, "default": "", "tooltip": (
    "Multiple-choice options, one per line; the answer is then a letter.")})
TARGETS_OVERRIDE_IN = ("STRING", {"default": "", "tooltip": (
    "Objects to look for, comma-separated (e.g. 'red car, all people'); skips the model when set.")})


def parse_options(options: str) -> list[str] | None:
    """Multiple-choice options typed one per line (None when there are none)."""
    return [line.strip() for line in options.splitlines() if line.strip()] or None


def _pil(item: Any) -> Any:
    from ..focus_engine.images import to_pil_rgb

    return to_pil_rgb(item)


def _config(**fields: Any) -> Any:
    from ..focus_engine import FocusConfig
    from ..focus_engine.errors import FocusConfigError

    try:
        return FocusConfig(**fields)
    except FocusConfigError as exc:
        raise ValueError(f"FOCUS: {exc}") from None


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
        from ..focus_engine.answer import check_question
        from ..focus_engine.targets import extract_targets, given_targets

        (found,) = run_per_image(1, lambda _: (
            given_targets(targets_override) if targets_override.strip()
            else extract_targets(mllm, check_question(question), _config(), should_stop=bridge.interrupted)
        ))
        return found, ", ".join(found.targets)


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
                    "First decoder layer summed (0-based). 0 and 0: the family default (LLaVA-1.5-7B 14..32).")}),
                "layer_end": ("INT", {"default": 0, "min": 0, "max": 512, "tooltip": (
                    "End of the layer range (exclusive); 0 = the family default.")}),
                "source": (["values", "keys", "random"], {"default": "values", "tooltip": (
                    "values: FOCUS. keys / random: the paper's ablations.")}),
            }
        }

    def relevance(self, mllm: Any, image: Any, targets: Any, layer_start: int, layer_end: int, source: str):
        from ..focus_engine.render import heatmap_overlay

        layers = None if layer_end == 0 else (layer_start, layer_end)
        config = _config(source=source, layers=layers)
        items = image_items(image)

        def one(index: int) -> dict[str, Any]:
            pil = _pil(items[index])
            maps = {}
            for target in targets.targets:
                bridge.throw_if_interrupted()
                maps[target] = mllm.relevance_map(pil, target, layers=layers, source=source, config=config)
            return maps

        maps = run_per_image(len(items), one)
        heat, previews = [], []
        for index, per_target in enumerate(maps):
            grids = [m.to_image() for m in per_target.values()]
            heat.append(np.maximum.reduce(grids))
            first = next(iter(per_target.values()))
            previews.append(np.asarray(heatmap_overlay(_pil(items[index]), first)))
        return RelevanceBatch(maps, mllm.family_defaults()), to_mask_tensor(heat), to_image_tensor(previews)


class FocusProposeROIs:
    DESCRIPTION = (
        "Stage 3a: anchors at the map's peaks, each grown into a box while the mean relevance stays high, then "
        "non-maximum suppression. Pure geometry, no model call. Outputs the ROIs and a MASK of all proposals."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "propose"
    RETURN_TYPES = ("FOCUS_ROIS", "MASK", "STRING")
    RETURN_NAMES = ("rois", "proposals_mask", "boxes_json")
    OUTPUT_TOOLTIPS = ("The proposals, best anchor first.", "1 inside any proposal, at the image's size.",
                       BOXES_JSON_TIP)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "relevance": ("FOCUS_RELEVANCE", {"tooltip": "Maps from FOCUS · Relevance Map."}),
                "anchors": ("INT", {"default": 0, "min": 0, "max": 200, "tooltip": (
                    "Anchor cells per target; 0 = 30 (15 when verifying fewer than 4 ROIs).")}),
                "spacing": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 50.0, "step": 0.5, "tooltip": (
                    "Minimum distance between anchors, in grid cells.")}),
                "min_size": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": (
                    "Initial box side in cells; 0 = the family default (3 on LLaVA-1.5's 24x24 grid).")}),
                "max_size": ("INT", {"default": 0, "min": 0, "max": 128, "tooltip": (
                    "Largest box side in cells; 0 = the family default (LLaVA-1.5 5, OneVision/Qwen 9).")}),
                "threshold": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": (
                    "A box grows while the mean relevance inside stays at least this.")}),
                "nms_iou": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": (
                    "Overlapping proposals above this IoU are suppressed.")}),
            }
        }

    def propose(self, relevance: Any, anchors: int, spacing: float, min_size: int, max_size: int,
                threshold: float, nms_iou: float):
        from ..focus_engine.render import roi_mask
        from ..focus_engine.rois import propose_rois_for_config

        config = _config(
            n_anchors=anchors or None, anchor_spacing=spacing, s_min=min_size or None, s_max=max_size or None,
            expand_threshold=threshold, nms_iou=nms_iou,
        ).resolved(relevance.family_defaults)
        if config.s_max < config.s_min:
            raise ValueError(f"FOCUS: max_size {config.s_max} is smaller than min_size {config.s_min}")
        rois = run_per_image(len(relevance.maps), lambda i: [
            roi for rmap in relevance.maps[i].values() for roi in propose_rois_for_config(rmap, config)
        ])
        sizes = [next(iter(m.values())).image_size for m in relevance.maps]
        masks = [roi_mask(size, [r.box for r in per_image]) for size, per_image in zip(sizes, rois)]
        return RoiBatch(rois, sizes), to_mask_tensor(masks), boxes_json(rois)


class FocusRankROIs:
    DESCRIPTION = (
        "Stage 3b: asks the model 'Is there a {target} in the image?' about the crops of the first n_steps ROIs "
        "per target (one batch per step) and re-ranks them by the Yes confidence; with overrun, keeps checking "
        "until one says Yes. Outputs ranked ROIs, the MASK of the selected ones and the best crop."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "rank"
    RETURN_TYPES = ("FOCUS_ROIS", "MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("rois", "selected_mask", "best_crop", "boxes_json")
    OUTPUT_TOOLTIPS = (
        "The ROIs re-ranked by verification confidence (selected ones marked for the answer).",
        "1 inside the ROIs the answer will use, at the image's size.",
        "The best ROI's crop of each image (padded to a common size in a batch).",
        BOXES_JSON_TIP,
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "mllm": MLLM_IN,
                "image": IMAGE_IN,
                "rois": ROIS_IN,
                "targets": TARGETS_IN,
                "n_steps": ("INT", {"default": 4, "min": 1, "max": 32, "tooltip": (
                    "ROIs verified per target; 1 without overrun skips verification (the no-ranking ablation).")}),
                "overrun": ("BOOLEAN", {"default": True, "tooltip": (
                    "If no verified ROI says Yes, verify further ones (at most 8 more per target).")}),
            }
        }

    def rank(self, mllm: Any, image: Any, rois: Any, targets: Any, n_steps: int, overrun: bool):
        from ..focus_engine.answer import select_rois
        from ..focus_engine.images import crop
        from ..focus_engine.ranking import rank_rois
        from ..focus_engine.render import roi_mask

        items = image_items(image)
        check_batch("the ROI list", len(rois.rois), len(items))
        config = _config(n_steps=n_steps, overrun=overrun).resolved(mllm.family_defaults())
        bar = bridge.progress_bar(len(items) * (1 + (config.max_overrun if overrun else 0)))

        def one(index: int) -> tuple[list[Any], list[Any]]:
            if not rois.rois[index]:
                raise ValueError(f"FOCUS: image {index} has no ROI to rank; check the relevance map and proposals")
            ranked = rank_rois(mllm, _pil(items[index]), rois.rois[index], config,
                               progress=lambda step, total: bar.update(1), should_stop=bridge.interrupted)
            return ranked, select_rois(ranked, targets.question_type, config)

        results = run_per_image(len(items), one, bar=bar)
        ranked = [r for r, _ in results]
        selected = [s for _, s in results]
        masks = [roi_mask(size, [r.box for r in sel]) for size, sel in zip(rois.image_sizes, selected)]
        crops = [np.asarray(crop(_pil(items[i]), selected[i][0].box)) for i in range(len(items))]
        return (RoiBatch(ranked, rois.image_sizes, selected), to_mask_tensor(masks),
                to_image_tensor(pad_to_common_size(crops)), boxes_json(ranked, selected))


class FocusAnswer:
    DESCRIPTION = (
        "Stage 4: answers the question on the selected ROI crop (union or canvas for several targets; "
        "all confident ROIs for counting questions). Multiple-choice options, one per line, are lettered A, B, ..."
    )
    CATEGORY = "FOCUS"
    FUNCTION = "answer"
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("answer", "annotated")
    OUTPUT_TOOLTIPS = ("The answer (one line per image of the batch).", "The image with the ROIs drawn.")

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
            },
        }

    def answer(self, mllm: Any, image: Any, question: str, rois: Any, targets: Any, options: str = ""):
        from ..focus_engine.answer import answer_question, select_rois
        from ..focus_engine.render import draw_rois

        items = image_items(image)
        check_batch("the ROI list", len(rois.rois), len(items))
        choices = parse_options(options)
        config = _config().resolved(mllm.family_defaults())

        def one(index: int) -> tuple[str, np.ndarray]:
            pil = _pil(items[index])
            selected = (rois.selected[index] if rois.selected is not None
                        else select_rois(rois.rois[index], targets.question_type, config))
            result = answer_question(mllm, pil, question, choices, selected, config, should_stop=bridge.interrupted)
            return result.text, np.asarray(draw_rois(pil, rois.rois[index], selected))

        results = run_per_image(len(items), one)
        # one line per image: a multi-line answer is folded so lines map to images
        lines = [" ".join(text.split()) for text, _ in results]
        return "\n".join(lines), to_image_tensor([picture for _, picture in results])
