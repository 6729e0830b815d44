"""Stage 3b: existence verification of ROI proposals, and re-ranking.

For each target, the crops of its first ``n_steps`` ROIs are asked
``Is there a {target} in the image? Answer Yes or No.`` (the paper's
wording without its last sentence: ``verify_answer_hint=False``) and ranked
by ``c = softmax(l_Yes, l_No)[Yes]``. With ``overrun``, a target none of
whose verified ROIs says Yes gets its next ROI verified, one more per step,
up to ``max_overrun`` (``None``: until one says Yes or none is left).
The crops of one step (all targets) go through the model in one batch.
``n_steps == 1`` without overrun skips verification. With ``verify_stop``
[ours], a target's ROIs are verified one per step, in relevance order,
until one's P(Yes) reaches it (``n_steps`` the cap).

A counting ("all X", type-2) question scores *every* proposal, "not
constrained by n_steps" (the paper, §3.3 and App. A.5): its answer takes
every ROI above the type-2 threshold (``verify_all``; at most the anchors).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from PIL import Image

from .config import FocusConfig
from .images import crop
from .rois import ROI

ProgressFn = Callable[[int, int], None]


def verification_skipped(config: FocusConfig) -> bool:
    return config.n_steps == 1 and not config.overrun


def verification_steps(config: FocusConfig) -> int:
    """The most verification steps (model calls) ``rank_rois`` makes (a
    resolved config: without a ``max_overrun`` cap, a target has at most
    ``n_anchors`` proposals)."""
    return (config.n_steps if config.verify_stop is not None else 1) + (overrun_cap(config) if config.overrun else 0)


def overrun_cap(config: FocusConfig) -> int:
    """The most ROIs verified beyond ``n_steps`` per target: ``max_overrun``,
    or, without a cap (the paper's "until one says Yes"), every proposal of
    the target (at most one per anchor)."""
    return config.max_overrun if config.max_overrun is not None else max(int(config.n_anchors or 0), 1)


def rank_rois(
    mllm: Any,
    image: Image.Image,
    rois: Sequence[ROI],
    config: FocusConfig,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    verify_all: bool = False,
) -> list[ROI]:
    """Stage 3b: verify and re-rank ``rois`` (each target's ROIs in proposal
    order) on crops of ``image`` (RGB); ``verify_all`` (type-2 questions):
    every ROI, in one step, whatever ``n_steps``.

    Returns new ROI objects (the input is left untouched), grouped by target
    in order of first appearance; within a target, verified ROIs come first by
    descending confidence, then the unverified ones in proposal order.
    """
    groups: dict[str, list[ROI]] = {}
    for roi in rois:
        groups.setdefault(roi.target, []).append(dataclasses.replace(roi, confidence=None))
    if verification_skipped(config) or not groups:
        return [roi for group in groups.values() for roi in group]

    checked = {target: 0 for target in groups}  # ROIs verified so far, per target
    # the answer looks at one verified crop only where one target is answered on its best ROI: keep that
    # crop's prefill for it (answer.py); several targets' answer is their union's or a canvas, a new image
    keeps_a_crop = len(groups) == 1 and not verify_all
    first = 1 if config.verify_stop is not None else config.n_steps
    budget = {target: len(group) if verify_all else min(len(group), first) for target, group in groups.items()}
    steps_total = 1 if verify_all else verification_steps(config)
    for step in range(steps_total):
        batch = [
            (target, index)
            for target, group in groups.items()
            for index in range(checked[target], budget[target])
        ]
        if not batch:
            break
        confidences = mllm.yes_no_confidence(
            [crop(image, groups[t][i].box) for t, i in batch],
            [t for t, _ in batch],
            batch_size=config.verify_batch_size,
            should_stop=should_stop,
            answer_hint=config.verify_answer_hint,
            keep_prefixes=keeps_a_crop,
        )
        for (target, index), value in zip(batch, confidences):
            groups[target][index].confidence = float(value)
            checked[target] = max(checked[target], index + 1)
        if progress is not None:
            progress(step + 1, steps_total)
        if verify_all:
            break
        budget = {target: _next_budget(group, checked[target], config) for target, group in groups.items()}
    return [roi for group in groups.values() for roi in _rank_group(group)]


def _next_budget(group: list[ROI], checked: int, config: FocusConfig) -> int:
    """How many of a target's ROIs are verified after the next step: one
    more while ``verify_stop`` is not reached within ``n_steps``; then, with
    overrun, one more until a verified ROI says Yes (``max_overrun`` at most)."""
    verified = [r.confidence or 0.0 for r in group[:checked]]
    if config.verify_stop is not None:
        if max(verified, default=0.0) >= config.verify_stop:
            return checked
        if checked < min(len(group), config.n_steps):
            return checked + 1
    if not config.overrun or max(verified, default=0.0) >= config.yes_threshold:
        return checked
    return min(checked + 1, len(group), config.n_steps + overrun_cap(config))


def _rank_group(group: list[ROI]) -> list[ROI]:
    verified = [r for r in group if r.confidence is not None]
    unverified = [r for r in group if r.confidence is None]
    return sorted(verified, key=lambda r: -r.confidence) + unverified  # sorted() is stable


def best_per_target(ranked: Sequence[ROI]) -> dict[str, ROI]:
    """The top ROI of each target (ranked lists keep each target's best first)."""
    best: dict[str, ROI] = {}
    for roi in ranked:
        best.setdefault(roi.target, roi)
    return best
