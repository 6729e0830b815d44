"""Stage 3b: existence verification of ROI proposals, and re-ranking.

For each target, the crops of its first ``n_steps`` ROIs are asked
``Is there a {target} in the image? Answer Yes or No.`` and ranked by
``c = softmax(l_Yes, l_No)[Yes]``. With ``overrun``, a target none of whose
verified ROIs says Yes gets its next ROI verified, one more per step, up to
``max_overrun``. The crops of one step (all targets) go through the model in
one batch. ``n_steps == 1`` without overrun skips verification.
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


def rank_rois(
    mllm: Any,
    image: Image.Image,
    rois: Sequence[ROI],
    config: FocusConfig,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ROI]:
    """Stage 3b: verify and re-rank ``rois`` (each target's ROIs in proposal
    order) on crops of ``image`` (RGB).

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
    budget = {target: min(len(group), config.n_steps) for target, group in groups.items()}
    steps_total = 1 + (config.max_overrun if config.overrun else 0)
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
        )
        for (target, index), value in zip(batch, confidences):
            groups[target][index].confidence = float(value)
            checked[target] = max(checked[target], index + 1)
        if progress is not None:
            progress(step + 1, steps_total)
        if not config.overrun:
            break
        # overrun: one more ROI for every target that has no Yes yet
        for target, group in groups.items():
            said_yes = any((r.confidence or 0.0) >= config.yes_threshold for r in group[: checked[target]])
            limit = min(len(group), config.n_steps + config.max_overrun)
            budget[target] = checked[target] if said_yes else min(checked[target] + 1, limit)
    return [roi for group in groups.values() for roi in _rank_group(group)]


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
