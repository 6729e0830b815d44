"""Benchmark metrics: pure functions over plain data (lists, tuples, arrays).

Definitions (kept here so results.json means one thing):
- accuracy: the plain mean of per-question correctness (as the paper).
- ROI coverage of a ground-truth box: ``area(ROI ∩ GT) / area(GT)``
  (``boxes.coverage``); a GT
  box is *covered* when some ROI's coverage is at least 0.5 (the paper's
  "ROI overlapping the GT box by >= 50 %"; our reading: half of the object
  lies inside the ROI, so a large ROI around a small object counts).
- ROI recall: covered GT boxes / all GT boxes, pooled over questions; two
  variants, over every *ranked* ROI a method returned, and over the
  *selected* ROIs its answer looked at.
- relevance-peak hit: the argmax pixel of a target's relevance map at image
  resolution lies inside that target's GT box, grown by ``margin`` pixels.
- region IoU of a ground-truth box: the largest ``box_iou`` between it and
  any region the method handed out (its *selected* ROIs: what the answer
  looked at and what the nodes' MASK, BBOX, SEGS and BOUNDING_BOX give; for
  ZoomEye the views it answered on); 0 when the method handed out none (a
  gated question the plain answer settled). One region may match several
  targets; extra regions cost nothing (TreeBench's rule).
- region mIoU: per question, the mean region IoU over its GT boxes; then the
  mean over the questions with GT boxes (TreeBench's mIoU when the regions are
  a model's boxes). None for a method without regions (the plain answer).
- region hit rate: GT boxes whose region IoU is at least 0.5, over all GT
  boxes, pooled.
- region area ratio: area of a GT box's best-matching region / area of the
  box (1 = as tight as the object; a region 4x the object's area gives 4);
  the median over the GT boxes that got a region.
- region metrics by target count: the three above over the questions with 1,
  2, ... GT boxes, keyed by that count.
- mask IoU of a question (on the synthetic world, whose renderer knows each
  object's shape, ``world.true_mask``): ``|M ∩ T| / |M ∪ T|`` of the MASK a
  node gives for the method's selected regions (M, > 0.5 is inside;
  ``masks.region_mask``, in each of ``masks.MASK_SHAPES``) and the union of
  the question's target objects' true masks (T); 0 when the method handed
  out no region. mask mIoU: its mean over the questions with true masks.
- mask cover: ``|M ∩ T| / |T|``, the share of the objects' pixels the mask
  holds (what an inpaint or detailer node misses is ``1 -`` this); its mean
  over the same questions.
- forward passes and seconds per question: plain means.
- gate answered: the share of gated questions the plain answer settled
  (no search); None for runs without the gate.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..boxes import BoxLike, box_area, box_iou, boxes_overlap, coverage

ROI_COVERAGE_THRESHOLD = 0.5
REGION_HIT_IOU = 0.5


def accuracy(correct: Sequence[bool]) -> float | None:
    """Fraction of True; None for no questions."""
    return float(np.mean([bool(c) for c in correct])) if len(correct) else None


def accuracy_by_category(correct: Sequence[bool], categories: Sequence[str]) -> dict[str, float]:
    """Accuracy per category, categories sorted by name."""
    if len(correct) != len(categories):
        raise ValueError(f"{len(correct)} results but {len(categories)} categories")
    groups: dict[str, list[bool]] = defaultdict(list)
    for ok, category in zip(correct, categories):
        groups[category].append(bool(ok))
    return {category: float(np.mean(groups[category])) for category in sorted(groups)}


def covered_boxes(
    gt_boxes: Sequence[BoxLike], rois: Sequence[BoxLike], threshold: float = ROI_COVERAGE_THRESHOLD
) -> int:
    """How many GT boxes some ROI covers by at least ``threshold``."""
    return sum(any(coverage(roi, gt) >= threshold for roi in rois) for gt in gt_boxes)


def roi_recall(
    questions: Iterable[tuple[Sequence[BoxLike], Sequence[BoxLike]]], threshold: float = ROI_COVERAGE_THRESHOLD
) -> float | None:
    """Pooled recall over ``(gt_boxes, roi_boxes)`` pairs, one per question;
    None when there are no GT boxes at all."""
    covered = total = 0
    for gt_boxes, rois in questions:
        covered += covered_boxes(gt_boxes, rois, threshold)
        total += len(gt_boxes)
    return covered / total if total else None


def region_matches(gt_boxes: Sequence[BoxLike], regions: Sequence[BoxLike]) -> list[tuple[float, float | None]]:
    """Per GT box, ``(region IoU, area ratio)`` of the region that overlaps it
    best (``(0.0, None)`` when there is no region or none overlaps it)."""
    matches: list[tuple[float, float | None]] = []
    for gt in gt_boxes:
        best = max(regions, key=lambda region: box_iou(region, gt), default=None)
        iou = box_iou(best, gt) if best is not None else 0.0
        matches.append((float(iou), box_area(best) / box_area(gt) if iou > 0 and box_area(gt) > 0 else None))
    return matches


def region_scores(questions: Iterable[tuple[Sequence[BoxLike], Sequence[BoxLike]]]) -> dict[str, Any]:
    """Region mIoU, hit rate at IoU >= ``REGION_HIT_IOU`` and median area ratio
    over ``(gt_boxes, regions)`` pairs, one per question (questions without GT
    boxes are left out), with the same three per GT-box count; Nones and {}
    when no question has GT boxes."""
    per_question = [region_matches(gt, regions) for gt, regions in questions if len(gt)]

    def scores(group: list[list[tuple[float, float | None]]]) -> dict[str, Any]:
        flat = [match for question in group for match in question]
        ratios = [ratio for _, ratio in flat if ratio is not None]
        return {
            "miou": mean(float(np.mean([iou for iou, _ in question])) for question in group),
            "hit_rate": rate(iou >= REGION_HIT_IOU for iou, _ in flat),
            "area_ratio": float(np.median(ratios)) if ratios else None,
        }

    overall = scores(per_question)
    counts = sorted({len(question) for question in per_question})
    return {
        "region_miou": overall["miou"], "region_hit_rate": overall["hit_rate"],
        "region_area_ratio": overall["area_ratio"],
        "region_by_target_count": {str(n): scores([q for q in per_question if len(q) == n]) for n in counts},
    }


def mask_match(mask: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``{"iou", "cover"}`` of a MASK (``[H, W]``, > 0.5 inside) against a
    true mask (bool ``[H, W]``): IoU, and the share of the true pixels inside
    the mask (0 and 0 for an empty truth)."""
    inside, truth = np.asarray(mask) > 0.5, np.asarray(truth, dtype=bool)
    if inside.shape != truth.shape:
        raise ValueError(f"a mask of shape {inside.shape} cannot be scored against a true mask of {truth.shape}")
    both, union, true = int((inside & truth).sum()), int((inside | truth).sum()), int(truth.sum())
    return {"iou": both / union if union else 0.0, "cover": both / true if true else 0.0}


def mask_scores(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per mask shape, the mask mIoU and mean cover over the records that
    carry ``mask_scores`` (``{shape: {"iou", "cover"}}``, the runner's, on
    questions with true masks); {} when none does."""
    scored = [r["mask_scores"] for r in records if isinstance(r.get("mask_scores"), Mapping)]
    shapes = sorted({shape for scores in scored for shape in scores})
    return {shape: {"miou": mean(s[shape]["iou"] for s in scored if shape in s),
                    "cover": mean(s[shape]["cover"] for s in scored if shape in s),
                    "n": sum(shape in s for s in scored)} for shape in shapes}


def peak_pixel(relevance_image: np.ndarray) -> tuple[int, int]:
    """(x, y) of the maximum of an ``[H, W]`` map (first in row-major order on ties)."""
    image = np.asarray(relevance_image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"a relevance image must be a non-empty [H, W] array, got shape {image.shape}")
    y, x = np.unravel_index(int(np.argmax(image)), image.shape)
    return int(x), int(y)


def point_in_box(point: tuple[float, float], box: BoxLike, margin: float = 0.0) -> bool:
    """``box`` grown by ``margin`` px contains ``point`` (exclusive right/bottom)."""
    x, y = point
    return box[0] - margin <= x < box[2] + margin and box[1] - margin <= y < box[3] + margin


def peak_hit(relevance_image: np.ndarray, gt_box: BoxLike, margin: float = 0.0) -> bool:
    """The map's argmax pixel lies in ``gt_box`` grown by ``margin`` px."""
    return point_in_box(peak_pixel(relevance_image), gt_box, margin)


def peak_cell_hit(rmap: Any, gt_box: BoxLike, margin: float = 0.0) -> bool:
    """The map's highest cell, as a pixel box of the original image, overlaps
    ``gt_box`` grown by ``margin`` px. This judges a map at its own resolution:
    on a 16x16 grid over a 2000-px scene a cell is 125 px, so a perfect map's
    upsampled argmax (a cell centre) can sit outside a 50-px object's box."""
    grid = np.asarray(rmap.grid)
    row, col = np.unravel_index(int(np.argmax(grid)), grid.shape)
    grown = (gt_box[0] - margin, gt_box[1] - margin, gt_box[2] + margin, gt_box[3] + margin)
    return boxes_overlap(rmap.cell_box(int(row), int(col)), grown)


def rate(flags: Iterable[bool]) -> float | None:
    values = [bool(f) for f in flags]
    return float(np.mean(values)) if values else None


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None; None if there are none."""
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate per-question records of one run (the runner's format):
    ``correct``, ``category``, ``forward_passes``, ``seconds``, optional
    ``gt_boxes``, ``ranked_boxes``, ``selected_boxes`` (None when the method
    has no ROIs), ``peak_hits`` (list of bools), ``chosen_index``, ``error``."""
    correct = [bool(r.get("correct")) for r in records]
    with_rois = [r for r in records if r.get("ranked_boxes") is not None]
    # a finder (focus-find, answer_view "none") answers nothing: no accuracy, rather than 0
    finder = any(r.get("answer_view") == "none" for r in records) and all(
        r.get("answer_view") == "none" for r in records if not r.get("error"))
    return {
        "n": len(records),
        "accuracy": None if finder else accuracy(correct),
        "accuracy_by_category": {} if finder else accuracy_by_category(
            correct, [str(r.get("category", "")) for r in records]),
        "forward_passes": mean(r.get("forward_passes") for r in records),
        "seconds": mean(r.get("seconds") for r in records),
        "roi_recall_ranked": roi_recall((r.get("gt_boxes") or [], r["ranked_boxes"]) for r in with_rois),
        "roi_recall_selected": roi_recall((r.get("gt_boxes") or [], r.get("selected_boxes") or []) for r in with_rois),
        **_region_scores_of(with_rois),
        "mask": mask_scores(with_rois),
        "peak_hit_rate": rate(hit for r in records for hit in (r.get("peak_hits") or [])),
        # a finder (focus-find, answer_view "none") gives no answer to parse
        "unparsed_answers": sum(1 for r in records if r.get("chosen_index") is None and not r.get("error")
                                and r.get("answer_view") != "none"),
        "errors": sum(1 for r in records if r.get("error")),
        "gate_answered": rate((r.get("gate") or {}).get("decision") == "answered" for r in records if r.get("gate")),
        **official_scores(records),
    }


def _region_scores_of(with_rois: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``region_scores`` over a run's records, their selected boxes as the
    regions; all None (and {}) for a run without regions (the plain answer)."""
    if not with_rois:
        return {"region_miou": None, "region_hit_rate": None, "region_area_ratio": None,
                "region_by_target_count": {}}
    return region_scores((r.get("gt_boxes") or [], r.get("selected_boxes") or []) for r in with_rois)


def official_scores(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The scores the benchmarks' own evaluations report, where the records
    carry what they need. HR-Bench (its VLMEvalKit evaluation): accuracy
    overall and per category within each ``cycle``, then the mean over the
    cycles. MME-RealWorld (its eval_your_results.py): accuracy per task and
    per task/subtask, over questions (``subtask``). TreeBench (VLMEvalKit's
    ``TreeBench``): ``treebench_scores``."""
    scores: dict[str, Any] = {}
    cycles = sorted({str(r["cycle"]) for r in records if r.get("cycle") not in (None, "")})
    if cycles:
        per_cycle = {}
        for cycle in cycles:
            group = [r for r in records if str(r.get("cycle")) == cycle]
            correct = [bool(r.get("correct")) for r in group]
            per_cycle[cycle] = {"all": accuracy(correct),
                                **accuracy_by_category(correct, [str(r.get("category", "")) for r in group])}
        kinds = sorted({k for v in per_cycle.values() for k in v})
        scores["hrbench_cycles"] = {
            "per_cycle": per_cycle,
            "mean_over_cycles": {k: mean(v[k] for v in per_cycle.values() if k in v) for k in kinds},
        }
    tree = [r for r in records if r.get("treebench_group") is not None]
    if tree:
        scores["treebench"] = treebench_scores(tree)
    if any(r.get("subtask") for r in records):
        correct = [bool(r.get("correct")) for r in records]
        labels = [f"{r.get('category', '')}/{r.get('subtask', '')}" for r in records]
        scores["accuracy_by_task_and_subtask"] = accuracy_by_category(correct, labels)
    return scores


def treebench_iou(gt_boxes: Sequence[BoxLike], boxes: Sequence[BoxLike]) -> float:
    """One question's IoU as TreeBench's evaluation scores it: each GT box's
    best IoU with any of the boxes, averaged over the GT boxes; 0 without
    boxes; a question without GT boxes scores 1 if any box was given."""
    if not gt_boxes:
        return float(bool(boxes))
    return float(np.mean([iou for iou, _ in region_matches(gt_boxes, boxes)]))


def treebench_scores(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """TreeBench's scores as VLMEvalKit reports them: accuracy per subtask
    within ``Perception`` and ``Reasoning`` (the record's ``treebench_group``),
    ``Overall`` accuracy over every question, and ``mIoU``, ``treebench_iou``
    of the selected boxes (the regions the method looked at) averaged over
    every question, a question with no regions (or an error) scoring 0;
    ``mIoU`` is None for a method that hands out no regions (the plain
    answer)."""
    scores: dict[str, Any] = {}
    for group in sorted({str(r["treebench_group"]) for r in records}):
        members = [r for r in records if str(r["treebench_group"]) == group]
        scores[group or "other"] = accuracy_by_category([bool(r.get("correct")) for r in members],
                                                        [str(r.get("category", "")) for r in members])
    scores["Overall"] = accuracy([bool(r.get("correct")) for r in records])
    has_regions = any(r.get("selected_boxes") is not None for r in records)
    scores["mIoU"] = mean(treebench_iou(r.get("gt_boxes") or [], r.get("selected_boxes") or [])
                          for r in records) if has_regions else None
    return scores


__all__ = [
    "REGION_HIT_IOU", "ROI_COVERAGE_THRESHOLD", "accuracy", "accuracy_by_category", "covered_boxes",
    "mask_match", "mask_scores", "mean", "official_scores", "peak_hit", "peak_pixel", "point_in_box", "rate",
    "region_matches", "region_scores",
    "roi_recall", "summarize", "treebench_iou", "treebench_scores",
]
