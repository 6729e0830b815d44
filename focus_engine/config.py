"""FocusConfig: every hyperparameter of the four FOCUS stages in one place,
and the named choices users pick from when loading a model.

Fields left at ``None`` take the model family's default;
``resolve_config(mllm, config)`` fills them in, once per run, for every caller
(pipeline, nodes, the adapter's ``relevance_map``). How a family shows an image
to its model (LLaVA-OneVision's map blur, Qwen2.5-VL's pixel budget) is not
here: those are the adapter's own settings (``load_mllm(..., settings=...)``).
``ZoomEyeSettings``: the ZoomEye baseline's constants, one per family
(``mllm.zoomeye_defaults()``).
Names follow docs/FOCUS.md; decisions the paper leaves open are marked [ours].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import FocusConfigError

RELEVANCE_SOURCES = ("values", "keys", "random")
MAP_PROMPTS = ("existence", "question")
GATE_SIGNALS = ("answer", "answerable")
ANSWER_SCORINGS = ("generate", "likelihood")
LAYER_AGGREGATIONS = ("sum", "rollout")
ROW_NORMALISATIONS = ("target", "visual")
ANSWER_CROPS = ("union", "per_target")
FAR_APART_MEASURES = ("union", "distance")
TARGET_REPLIES = ("reasoned", "direct")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ATTENTIONS = ("auto", "sdpa", "flash_attention_2", "eager")
DEVICES = ("auto", "cuda", "cpu", "mps")
QUANTIZATIONS = ("none", "8bit", "4bit")
"""Weights as loaded: as saved, or through bitsandbytes in 8-bit (LLM.int8) or 4-bit NF4."""
"""Load options: ``load_mllm``, ``focus run`` and the Load MLLM node offer these."""
GENERAL_DEFAULTS: dict[str, Any] = {"s_min": 3, "s_max": 5, "type2_threshold": 0.5, "answer_crops": "union",
                                    "answer_with_global": False}
"""Where a family states no default of its own (FOCUS.md: LLaVA-1.5's values)."""
DEFAULT_STOP_WORDS = (
    "a", "an", "the", "with", "of", "and", "or", "in", "on", "at", "to", "for",
    "by", "from", "its", "his", "her", "their", "this", "that", "is", "are",
    # generic head nouns: "the purple object" restricts nothing beyond "purple",
    # and their maps (any salient thing) only add noise to the AND product
    "object", "objects", "thing", "things",
)


@dataclass
class FocusConfig:
    # --- stage 1: targets --------------------------------------------------
    target_max_new_tokens: int = 48
    """Token budget of the in-context target-extraction answer."""
    target_reply: str = "reasoned"
    """How the model's target answer is asked for: ``reasoned`` (ZoomEye's and
    the paper's format: a sentence of reasoning, then the lead-in and the
    objects) or ``direct`` [ours] (the reply starts at the lead-in and
    decoding stops at the end of the list: a few tokens instead of ~26)."""
    target_lookup_tokens: int = 10
    """[ours] Prompt-lookup decoding of the target answer: up to this many
    tokens copied from the prompt are proposed and checked in one call (the
    reasoned reply repeats the question's words and the examples' lead-in),
    the greedy answer in fewer calls; 0 = one call per token."""

    # --- stage 2: relevance maps --------------------------------------------
    layers: tuple[int, int] | None = None
    """Half-open range ``(start, end)`` of 0-based decoder layers to sum over;
    ``None`` = the family default (LLaVA-1.5-7B: (14, 32))."""
    layer_fraction: float = 0.55
    """[ours] For models without a tabulated range: use the last this-fraction
    of the layers (the paper's rule says 25-60 %)."""
    source: str = "values"
    """``values`` (FOCUS), ``keys`` (pre-RoPE keys, ablation) or ``random``."""
    aggregation: str = "sum"
    """``sum`` of per-layer rows (the paper's code) or a true ``rollout`` [ours]."""
    row_normalisation: str = "target"
    """How a layer's residual similarity rows are normalised before they are
    summed: ``target``, each target token's row to sum to 1 (Fig. 7's comment,
    "row-wise", and FOCUS.md); ``visual``, Fig. 7's pseudocode read literally
    (``X /= X.sum(dim=-1)`` without keepdim divides element (t, v) by image
    token v's own row sum). Which one the authors ran is unknown."""
    clamp_negative: bool = True
    """[ours] Clamp negative cosine similarities to 0 before row normalisation."""
    skip_stop_words: bool = True
    """[ours] Leave stop-word tokens out of the per-token product."""
    stop_words: tuple[str, ...] = DEFAULT_STOP_WORDS
    seed: int = 0
    """Seed of the ``random`` ablation map."""
    map_prompt: str = "existence"
    """Which prefill a target's map is read from: ``existence`` (the paper's
    "Is there a {target} in the image?", one per target) or ``question`` [ours]
    (the answer prompt's own prefill, for the targets the question names; the
    existence prompt for the others)."""
    relevance_batch_size: int = 8
    """[ours] Existence prompts per forward call (the targets of one question)."""

    # --- the gate [ours] -------------------------------------------------------
    gate_threshold: float | None = None
    """Answer on the whole image, without searching, when the plain answer's
    confidence is at least this; ``None`` = off (the paper: always search)."""
    gate_signal: str = "answer"
    """``answer``: the lowest probability of the plain answer's tokens (no
    extra pass); ``answerable``: ZoomEye's "Could you answer the question...?"
    P(Yes) on the whole image (one pass)."""

    # --- stage 3a: ROI proposal ----------------------------------------------
    n_anchors: int | None = None
    """Top-k anchor cells; ``None`` = 15 if n_steps < 4 else 30."""
    anchor_spacing: float = 3.0
    """s_dist: minimum Euclidean distance in cells between anchors (2 on V*)."""
    s_min: int | None = None
    """Side of the initial box around each anchor, in cells; ``None`` = family
    default (3; LLaVA geometries other than 24x24 scale it with the grid)."""
    s_max: int | None = None
    """Largest box side in cells; ``None`` = family default (LLaVA-1.5: 5)."""
    expand_threshold: float = 0.5
    """Grow a box while the mean relevance inside stays at least this."""
    nms_iou: float = 0.3
    extent_floor: float | None = 0.3
    """[ours] A box also spans the connected cells around its anchor whose
    relevance is at least this (on the [0, 1] map), widened ``extent_context``
    times, past ``s_max``: an object larger than the paper's boxes gets a box
    that holds it with context. ``None`` = the paper's boxes."""
    extent_context: float = 2.0
    """[ours] How many times its own size the box around a relevant region is."""
    extent_core: float = 0.5
    """[ours] Only where the cells of at least this relevance around the
    anchor span two cells or more (a large object) does the box follow the
    region; a one-cell peak keeps the paper's box."""

    # --- stage 3b: ranking -----------------------------------------------------
    n_steps: int = 4
    """Verification budget: ROIs checked per target (1 without overrun = none)."""
    overrun: bool = False
    """Keep verifying further ROIs until one says Yes (bounded by
    max_overrun): the paper's (``--preset paper``); off by default, where
    ``verify_stop`` makes ``n_steps`` the cap."""
    max_overrun: int | None = 8
    """[ours] At most this many extra ROIs verified per target by the
    overrun; ``None`` = the paper's "until one says Yes": every proposal of
    the target at most (one per anchor)."""
    yes_threshold: float = 0.5
    """Confidence at which a verified ROI counts as a Yes."""
    verify_answer_hint: bool = True
    """[ours] Verification asks "Is there a {target} in the image? Answer Yes
    or No." (the relevance prefill's prompt, FOCUS.md); off = the paper's
    text, the question alone."""
    verify_stop: float | None = 0.5
    """[ours] Verify a target's ROIs one at a time, in relevance order, and
    stop once one's P(Yes) reaches this (``n_steps`` the cap; with
    ``overrun``, on until a Yes as usual); ``None`` = the paper's: the first
    ``n_steps`` in one step. 0.5 was chosen on seed 25, a set no table uses
    (docs/benchmarks.md)."""
    verify_batch_size: int = 8
    """[ours] Crops per verification forward batch (one step = one batch)."""

    # --- stage 4: answer --------------------------------------------------------
    type2_threshold: float | None = None
    """Type-2 questions use every ROI above this confidence; ``None`` = family
    default (LLaVA-1.5: 0.6)."""
    answer_crops: str | None = None
    """How the chosen regions are shown for the answer: ``union``, one crop of
    their union (or a canvas holding each crop when they lie far apart; the
    paper's LLaVA-1.5 answer), or ``per_target``, each region as its own image
    (the paper's global-local answer: "the top ROI of each target" as separate
    images; more than ``MAX_ANSWER_CROPS`` regions fall back to ``union``).
    ``None`` = the family default (LLaVA-OneVision ``per_target``, else ``union``)."""
    answer_with_global: bool | None = None
    """Show the whole image with the regions drawn on it before the crop(s)
    (the paper's interleaved prompt for global-local models). ``None`` = the
    family default (LLaVA-OneVision yes; LLaVA-1.5 and Qwen2.5-VL no: Qwen's
    is ours, ZoomEye gives Qwen the marked global image too)."""
    far_apart_px: int = 1200
    """Targets further apart than this (original pixels, measured as
    ``far_apart_measure`` says) are pasted on a canvas instead of cropping
    their union."""
    far_apart_measure: str = "union"
    """[ours] ``union``: the long side of the regions' union box;
    ``distance``: the largest distance between two regions' centres (the
    paper's "far apart")."""
    count_on_canvas: bool = False
    """A counting (type-2) question's several regions are pasted on a canvas
    (the paper's) instead of cropped as their union (ours: one view of the
    scene around them, unless they lie far apart)."""
    answer_max_new_tokens: int = 64
    answer_scoring: str = "generate"
    """How a multiple-choice answer is chosen: ``generate`` (the answer is
    generated and parsed, as the FOCUS paper compares) or ``likelihood``
    (each option scored as the reply, lowest loss wins: V*Bench's, ZoomEye's
    and SEAL's evaluation)."""
    ask_on_full_image_if_no_roi: bool = True
    """Answer on the whole image when no ROI survives (else raise)."""

    # --- the runtime ------------------------------------------------------------
    reuse_prefixes: bool = True
    """[ours] Prefill each image once per question: the prompts that start
    with the same image (the targets' relevance prompts; the answer on the
    crop just verified) go on from one prefill of it, and the target
    extraction's worked examples are prefilled once per loaded model
    (``mllm/prefixes.py``). The same answers, in less time; off for A/B and
    debugging."""

    # --- provenance ---------------------------------------------------------------
    preset: str = "default"
    """The preset this config was made from (``presets``): ``default`` or ``paper``."""
    preset_dataset: str = "other"
    """The dataset the preset was chosen for (the paper's settings differ by dataset)."""
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> FocusConfigError:
            return FocusConfigError(f"FocusConfig.{name}={getattr(self, name)!r}: {why}")

        choices = {"source": RELEVANCE_SOURCES, "gate_signal": GATE_SIGNALS, "answer_scoring": ANSWER_SCORINGS,
                   "map_prompt": MAP_PROMPTS, "aggregation": LAYER_AGGREGATIONS,
                   "row_normalisation": ROW_NORMALISATIONS, "target_reply": TARGET_REPLIES,
                   "far_apart_measure": FAR_APART_MEASURES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be one of {', '.join(allowed)}")
        if self.answer_scoring == "likelihood" and self.gate_threshold is not None:
            raise bad("answer_scoring", "likelihood cannot be gated: the gate judges a generated answer")
        if self.gate_threshold is not None and not 0.0 <= self.gate_threshold <= 1.0:
            raise bad("gate_threshold", "must be in [0, 1], or None for no gate")
        if self.answer_crops is not None and self.answer_crops not in ANSWER_CROPS:
            raise bad("answer_crops", f"must be one of {', '.join(ANSWER_CROPS)}, or None for the family default")
        if not 0 <= self.target_lookup_tokens <= 64:
            raise bad("target_lookup_tokens", "must be 0 (off) to 64")
        if self.verify_stop is not None and not 0.0 < self.verify_stop <= 1.0:
            raise bad("verify_stop", "must be in (0, 1], or None to verify n_steps ROIs at once")
        if self.layers is not None:
            if len(self.layers) != 2 or not all(isinstance(v, int) for v in self.layers):
                raise bad("layers", "must be a (start, end) pair of ints or None")
            start, end = self.layers
            if not 0 <= start < end:
                raise bad("layers", "needs 0 <= start < end (a half-open range of layer indices)")
            self.layers = (int(start), int(end))
        if not 0.0 < self.layer_fraction <= 1.0:
            raise bad("layer_fraction", "must be in (0, 1]")
        if self.n_steps < 1:
            raise bad("n_steps", "must be at least 1")
        if self.n_anchors is not None and self.n_anchors < 1:
            raise bad("n_anchors", "must be at least 1 or None")
        if self.s_min is not None and self.s_min < 1:
            raise bad("s_min", "must be at least 1 cell")
        if self.s_max is not None and self.s_min is not None and self.s_max < self.s_min:
            raise bad("s_max", f"must be at least s_min={self.s_min}")
        if self.anchor_spacing < 0:
            raise bad("anchor_spacing", "must be >= 0")
        if self.extent_floor is not None and not 0.0 < self.extent_floor <= 1.0:
            raise bad("extent_floor", "must be in (0, 1], or None for the paper's boxes")
        if not 0.0 < self.extent_core <= 1.0:
            raise bad("extent_core", "must be in (0, 1]")
        if self.extent_context < 1.0:
            raise bad("extent_context", "must be at least 1 (the region itself)")
        for name in ("expand_threshold", "nms_iou", "yes_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if self.type2_threshold is not None and not 0.0 <= self.type2_threshold <= 1.0:
            raise bad("type2_threshold", "must be in [0, 1] or None")
        for name in ("verify_batch_size", "relevance_batch_size", "answer_max_new_tokens", "target_max_new_tokens"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1")
        if self.max_overrun is not None and self.max_overrun < 0:
            raise bad("max_overrun", "must be >= 0, or None for no cap (every proposal of the target at most)")
        if self.far_apart_px < 1:
            raise bad("far_apart_px", "must be at least 1 pixel")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_config(mllm: Any, config: FocusConfig | None = None, **overrides: Any) -> FocusConfig:
    """The config a run uses on ``mllm``: ``overrides`` applied, every
    ``None`` field given the family's default (``mllm.family_defaults()``,
    else ``GENERAL_DEFAULTS``), anchors by the verification budget, and the
    layer range checked against the model's depth (the family's range, or
    the last ``layer_fraction`` of its layers, when ``layers`` is None).
    Resolving a resolved config changes nothing."""
    config = dataclasses.replace(config or FocusConfig(), **overrides)
    fields = {**GENERAL_DEFAULTS, **mllm.family_defaults()}
    updates = {name: value for name, value in fields.items() if getattr(config, name) is None}
    if config.n_anchors is None:
        updates["n_anchors"] = 15 if config.n_steps < 4 else 30
    layers = config.layers
    updates["layers"] = mllm.default_layers(config.layer_fraction) if layers is None else mllm.check_layers(layers)
    return dataclasses.replace(config, **updates)


@dataclass(frozen=True)
class ZoomEyeSettings:
    """ZoomEye's constants for one model family (its evaluation script's)."""

    input_side: int
    """S: a node is a leaf when its long side is below this (the encoder's input)."""
    view: str = "global_local"
    """``local``: the node's crop alone (LLaVA-1.5); ``global_local``: the whole
    image with the node's box drawn, then the zoomed crop."""
    bias: float = 0.6
    """b: the existence weight at the root (LLaVA-1.5: 0.2)."""
    patch_scale: float | None = 1.2
    """A node's view is enlarged this much (and to at least S) around its centre."""
    upper: float = 0.6
    lower: float = 0.0
    decrements: tuple[float, ...] = (0.1, 0.1, 0.2)
    """The answering threshold starts at ``upper``; after ``3 * D`` pops each
    failed pop lowers it by the next decrement (the last repeats), every second
    pop, and the search gives up below ``lower``."""
    depth_limit: int = 5
    type2_depth: int = 2
    type2_threshold: float = 0.6

    @classmethod
    def for_model(cls, mllm: Any) -> "ZoomEyeSettings":
        """The family's constants: ``mllm.zoomeye_defaults()``."""
        return mllm.zoomeye_defaults()


__all__ = [
    "ANSWER_CROPS", "ANSWER_SCORINGS", "ATTENTIONS", "DEFAULT_STOP_WORDS", "DEVICES", "FAR_APART_MEASURES", "FocusConfig", "GATE_SIGNALS", "LAYER_AGGREGATIONS", "MAP_PROMPTS",
    "PRECISIONS", "QUANTIZATIONS", "RELEVANCE_SOURCES", "ROW_NORMALISATIONS", "TARGET_REPLIES", "ZoomEyeSettings", "resolve_config",
]
