"""What the FOCUS nodes share: the socket payloads and their input specs,
the engine config, and IMAGE/MASK conversion.

IMAGE is ``[B, H, W, C]`` float32 in 0..1, MASK ``[B, H, W]`` float32 in 0..1.
FOCUS_RELEVANCE and FOCUS_ROIS hold one entry per image of the batch. The
engine is imported inside functions (importing the pack must not import torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..focus_engine.config import FocusConfig
from ..focus_engine.masks import DEFAULT_MASK_SHAPE, MASK_SHAPES, RELEVANCE_MASK_THRESHOLD
from . import bridge

BOXES_JSON_TIP = (
    'The ROIs as JSON, one entry per image: [{"image": 0, "rois": [{"box": [x0, y0, x1, y1], "target", "score", '
    '"confidence", "selected"}], "preset", "preset_dataset", "config"}], boxes in original-image pixels '
    '(right/bottom exclusive); config: the settings the ROIs were found with.'
)
MLLM_IN = ("FOCUS_MLLM", {"tooltip": "The model from FOCUS · Load MLLM."})
IMAGE_IN = ("IMAGE", {"tooltip": "The image batch (the same batch through the whole FOCUS chain)."})
TARGETS_IN = ("FOCUS_TARGETS", {"tooltip": "The objects to look for, from FOCUS · Extract Targets."})
ROIS_IN = ("FOCUS_ROIS", {"tooltip": "Regions of interest from FOCUS · Propose ROIs or Rank ROIs."})
QUESTION_IN = ("STRING", {"multiline": True, "default": "", "tooltip": "The question about the image."})
OPTIONS_IN = ("STRING", {"multiline": True, "default": "", "tooltip": (
    "Multiple-choice options, one per line; the answer is then a letter.")})
GATE_TIP = (
    "Adaptive gate: when the plain answer on the whole image is at least this confident (its least sure token's "
    "probability), the plain answer stands. 0 = off: always the answer on the ROIs (the paper).")
GATE_IN = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": (
    GATE_TIP + " Here the search is skipped: it saves its time when the plain answer stands.")})
ANSWER_GATE_IN = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": (
    GATE_TIP + " The ROI nodes before this one have already searched, so here it saves no time: it only chooses "
    "which answer stands. To skip the search, use FOCUS · VQA's gate.")})
GATE_JSON_TIP = (
    'The gate per image as JSON: [{"image": 0, "decision": "answered" | "searched" | "off", "confidence", '
    '"threshold", "plain_answer"}].'
)
TARGETS_OVERRIDE_IN = ("STRING", {"default": "", "tooltip": (
    "Objects to look for, comma-separated (e.g. 'red car, all people'); skips the model when set.")})
PRESET_CHOICES = ["default", "paper (vstar)", "paper (hrbench)", "paper (mme)", "paper (other)"]
"""``default``, or the paper preset for a dataset (``presets.DATASETS``): one widget for both."""
PRESET_IN = (PRESET_CHOICES, {"default": "default", "tooltip": (
    "The settings this node starts from. default: the project's. paper (dataset): the paper's (Tab. 7) for the "
    "model's family on that benchmark (other: any other data). The node's own widgets come over the preset. "
    "FOCUS · VQA on paper is the paper's run; in a chain of stage nodes, choose it on each node that has it and "
    "turn Rank ROIs' overrun on (the paper's).")})
VERIFY_STOP_IN = ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.05, "tooltip": (
    f"Stop verifying a target's ROIs once a crop's P(Yes) reaches this. -1: the preset's ({FocusConfig.verify_stop} "
    "in default, off in paper). 0: off, the first n_steps ROIs verified at once (the paper's).")})

MASK_SHAPE_IN = (list(MASK_SHAPES), {"default": DEFAULT_MASK_SHAPE, "tooltip": (
    "The MASK's shape. box: 1 inside each region's box (the box the model verified: the object with context "
    "around it). relevance: inside each box, only where the object's relevance map reaches "
    f"{RELEVANCE_MASK_THRESHOLD:g} of its highest value there: tighter, following the object to a cell of the "
    "model's grid, but it can leave an edge of the object out (grow it to be safe).")})


def mask_tip(which: str) -> str:
    """The tooltip of a node's region MASK output, saying which regions it holds."""
    return (f"1 inside {which} (mask_shape: their boxes, or where their relevance is high), at the image's size; "
            "one mask per image.")


@dataclass
class RelevanceBatch:
    """FOCUS_RELEVANCE: per image, target -> RelevanceMap; plus the config
    the maps were made with, resolved for the model (Propose ROIs has no
    model input and starts from it)."""

    maps: list[dict[str, Any]]
    config: Any


@dataclass
class RoiBatch:
    """FOCUS_ROIS: per image, its ROIs (original pixels) and its size; once
    ranked, the ROIs the answer uses (``selection``)."""

    per_image: list[list[Any]]
    image_sizes: list[tuple[int, int]]
    selected: list[list[Any]] | None = None
    maps: list[dict[str, Any]] | None = None
    """Per image, target -> the RelevanceMap the ROIs came from (for masks
    that follow it); None where the ROIs came without maps."""

    def masks(self, chosen: Sequence[Sequence[Any]], shape: str, grow: int = 0, feather: int = 0) -> Any:
        """The MASK batch of the ``chosen`` ROIs of each image in ``shape``
        (``masks.MASK_SHAPES``), grown and feathered in pixels."""
        return region_masks(chosen, self.image_sizes, shape, self.maps, grow=grow, feather=feather)

    def selection(self, index: int, question_type: int, config: Any) -> list[Any]:
        """The ROIs of image ``index`` the answer uses: as Rank ROIs chose
        them, else chosen now by stage 4's rule (``answer.select_rois``)."""
        from ..focus_engine.answer import select_rois

        if self.selected is not None:
            return list(self.selected[index])
        return select_rois(self.per_image[index], question_type, config)


def expect(value: Any, kind: type, socket: str, source: str) -> Any:
    """``value`` if it is what the ``socket`` input carries (``kind``, made by
    ``source``); else a node error. ComfyUI checks socket types when it
    validates a prompt; this keeps the nodes safe when another pack hands
    them something else under a FOCUS type name."""
    if not isinstance(value, kind):
        raise ValueError(f"FOCUS: the {socket} input takes the output of {source}, not a {type(value).__name__}")
    return value


def rois_in(value: Any) -> "RoiBatch":
    return expect(value, RoiBatch, "rois", "FOCUS · Propose ROIs or Rank ROIs")


def relevance_in(value: Any) -> "RelevanceBatch":
    return expect(value, RelevanceBatch, "relevance", "FOCUS · Relevance Map")


def targets_in(value: Any) -> Any:
    from ..focus_engine.targets import Targets

    return expect(value, Targets, "targets", "FOCUS · Extract Targets")


def use_mllm(mllm: Any) -> Any:
    """The engine adapter behind a FOCUS_MLLM input, loaded again if
    ComfyUI's model manager released it; a failed reload stops the node
    with the engine's message."""
    from ..focus_engine.errors import FocusError
    from .memory import ManagedMLLM, model_of

    if not isinstance(mllm, ManagedMLLM) and not callable(getattr(mllm, "prefill_prompts", None)):
        expect(mllm, ManagedMLLM, "mllm", "FOCUS · Load MLLM")
    try:
        return model_of(mllm)
    except FocusError as exc:
        raise ValueError(f"FOCUS: {exc}") from None


def finish_with(mllm: Any) -> None:
    """The end of a FOCUS chain: the model may be released (keep_loaded off)."""
    from .memory import ManagedMLLM

    if isinstance(mllm, ManagedMLLM):
        mllm.done()


def preset_settings(preset: str = "default", verify_stop: float = -1.0) -> dict[str, Any]:
    """The settings a preset widget (``PRESET_CHOICES``) and a ``verify_stop``
    widget (-1: the preset's; 0: off) stand for; a value from a stranger's
    workflow that is not a choice stops the node."""
    from ..focus_engine.presets import DATASETS

    settings: dict[str, Any] = {}
    if preset != "default":
        dataset = preset.removeprefix("paper (").removesuffix(")")
        if preset not in PRESET_CHOICES or dataset not in DATASETS:
            raise ValueError(f"FOCUS: preset {preset!r}: choose one of {', '.join(PRESET_CHOICES)}")
        settings.update(preset="paper", preset_dataset=dataset)
    if not isinstance(verify_stop, (int, float)) or not -1.0 <= verify_stop <= 1.0:
        raise ValueError(f"FOCUS: verify_stop {verify_stop!r}: give -1 (the preset's), 0 (off) or a P(Yes) up to 1")
    if verify_stop >= 0:
        settings["verify_stop"] = float(verify_stop) if verify_stop > 0 else None
    return settings


def focus_config(mllm: Any, **fields: Any) -> Any:
    """The engine's config from node widgets, built by the engine's one
    settings function (``methods.setup.run_config``: the widgets are what the
    user set) and resolved for ``mllm``; a bad value stops the node with the
    engine's message."""
    from ..focus_engine.errors import FocusError
    from ..focus_engine.methods.setup import run_config

    try:
        return run_config(mllm, "focus", **fields)
    except FocusError as exc:
        raise ValueError(f"FOCUS: {exc}") from None


def focus_method(mllm: Any, name: str, **fields: Any) -> Any:
    """The method ``name`` on ``mllm`` with the widgets' settings (as
    ``focus_config``); a bad value stops the node with the engine's message."""
    from ..focus_engine.errors import FocusError
    from ..focus_engine.methods import make_method

    try:
        return make_method(name, mllm, **fields)
    except FocusError as exc:
        raise ValueError(f"FOCUS: {exc}") from None


def gate_json(decisions: Sequence[dict[str, Any] | None]) -> str:
    """The gate's decision per image (None: the gate was off) as a JSON STRING."""
    import json

    return json.dumps([{"image": index, **(decision or {"decision": "off"})} for index, decision in enumerate(decisions)])


def parse_options(options: str) -> list[str] | None:
    """Multiple-choice options typed one per line (None when there are none)."""
    return [line.strip() for line in options.splitlines() if line.strip()] or None


def pil_image(item: Any) -> Any:
    """One ``[H, W, C]`` IMAGE item as the engine's RGB image."""
    from ..focus_engine.images import to_pil_rgb

    return to_pil_rgb(item)


def boxes_json(rois: Sequence[Sequence[Any]], selected: Sequence[Sequence[Any]] | None = None,
               configs: Sequence[Any] | Any = None) -> str:
    """The ROIs as a JSON STRING for other nodes and scripts: one entry per
    image, boxes in original pixels ``[x0, y0, x1, y1]`` (exclusive right/bottom),
    with the preset and the config they were found with (``configs``: one
    FocusConfig or dict for all images, or one per image)."""
    import dataclasses
    import json

    def as_dict(config: Any) -> dict[str, Any]:
        return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)

    per_image = list(configs) if isinstance(configs, (list, tuple)) else [configs] * len(rois)
    images = []
    for index, image_rois in enumerate(rois):
        chosen = {id(r) for r in selected[index]} if selected is not None else set()
        entry: dict[str, Any] = {"image": index, "rois": [
            {"box": [int(v) for v in r.box], "target": r.target, "score": round(float(r.score), 4),
             "confidence": None if r.confidence is None else round(float(r.confidence), 4),
             "selected": id(r) in chosen}
            for r in image_rois
        ]}
        if per_image[index] is not None:
            config = as_dict(per_image[index])
            entry.update(preset=config.get("preset"), preset_dataset=config.get("preset_dataset"), config=config)
        images.append(entry)
    return json.dumps(images)


def image_items(image: Any) -> list[Any]:
    """A ComfyUI IMAGE batch as a list of ``[H, W, C]`` tensors."""
    if image is None or getattr(image, "ndim", 0) != 4 or image.shape[0] == 0:
        shape = tuple(getattr(image, "shape", ()))
        raise ValueError(f"expected an IMAGE batch [B, H, W, C], got {shape or type(image).__name__}")
    return [image[i] for i in range(image.shape[0])]


def check_batch(what: str, count: int, images: int) -> None:
    if count != images:
        raise ValueError(
            f"{what} holds {count} image(s) but the IMAGE batch has {images}; connect the same image batch "
            "to every FOCUS node of one chain"
        )


def to_image_tensor(arrays: Sequence[np.ndarray]) -> Any:
    """uint8 or float HWC arrays of one size -> IMAGE tensor."""
    import torch

    stacked = np.stack([a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a for a in arrays])
    return torch.from_numpy(stacked.astype(np.float32))


def to_mask_tensor(masks: Sequence[np.ndarray]) -> Any:
    import torch

    return torch.from_numpy(np.stack([m.astype(np.float32) for m in masks]))


def region_masks(per_image: Sequence[Sequence[Any]], sizes: Sequence[tuple[int, int]], shape: str,
                 maps: Sequence[dict[str, Any]] | None = None, *, grow: int = 0, feather: int = 0) -> Any:
    """The MASK batch of each image's ROIs in ``shape``, from each image's
    maps (``masks.region_mask``)."""
    from ..focus_engine.masks import region_mask

    if shape not in MASK_SHAPES:
        raise ValueError(f"FOCUS: mask_shape must be one of {', '.join(MASK_SHAPES)}, not {shape!r}")
    return to_mask_tensor([region_mask(size, rois, shape, maps[i] if maps else None, grow=grow, feather=feather)
                           for i, (rois, size) in enumerate(zip(per_image, sizes))])


def pad_to_common_size(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Images of different sizes (crops) padded with black to one size, as a batch needs."""
    height = max(a.shape[0] for a in arrays)
    width = max(a.shape[1] for a in arrays)
    out = []
    for a in arrays:
        canvas = np.zeros((height, width, a.shape[2]), dtype=a.dtype)
        canvas[: a.shape[0], : a.shape[1]] = a
        out.append(canvas)
    return out


def run_per_image(count: int, work: Callable[[int], Any], bar: Any = None) -> list[Any]:
    """``work(i)`` for each image, with ComfyUI's progress bar (one step per
    image unless the caller's ``bar`` counts finer steps) and an interruption
    check between model calls; engine errors become node errors."""
    from ..focus_engine.errors import FocusError

    own_bar = bar is None
    bar = bridge.progress_bar(count) if own_bar else bar
    results = []
    for index in range(count):
        bridge.throw_if_interrupted()
        try:
            results.append(work(index))
        except FocusError as exc:
            raise ValueError(f"FOCUS: {exc}") from None
        except InterruptedError:
            bridge.throw_if_interrupted()  # ComfyUI's own interruption, so it reports a cancel
            raise
        if own_bar:
            bar.update(1)
    return results
