"""Benchmark metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from focus_engine.boxes import coverage
from focus_engine.bench.metrics import (
    accuracy, accuracy_by_category, covered_boxes, mean, peak_cell_hit, peak_hit, peak_pixel, region_matches,
    region_scores, roi_recall, summarize,
)


def test_accuracy_overall_and_per_category():
    correct = [True, False, True, True]
    categories = ["spatial", "attr", "attr", "spatial"]
    assert accuracy(correct) == 0.75
    assert accuracy([]) is None
    assert accuracy_by_category(correct, categories) == {"attr": 0.5, "spatial": 1.0}
    with pytest.raises(ValueError):
        accuracy_by_category(correct, categories[:2])


def test_coverage_is_intersection_over_gt_area():
    gt = (10, 10, 30, 30)  # 400 px
    assert coverage((0, 0, 100, 100), gt) == 1.0  # a large ROI around a small object covers it
    assert coverage((20, 10, 40, 30), gt) == 0.5  # right half
    assert coverage((20, 20, 40, 40), gt) == 0.25
    assert coverage((30, 30, 50, 50), gt) == 0.0  # touching corners only
    assert coverage((0, 0, 5, 5), (3, 3, 3, 9)) == 0.0  # empty GT box


def test_roi_recall_any_roi_at_half_coverage():
    gts = [(10, 10, 30, 30), (100, 100, 120, 120)]
    assert covered_boxes(gts, [(20, 10, 40, 30)]) == 1  # exactly 50 % counts
    assert covered_boxes(gts, [(21, 10, 40, 30)]) == 0  # 45 % does not
    assert covered_boxes(gts, [(0, 0, 200, 200)]) == 2
    questions = [
        (gts, [(0, 0, 35, 35), (500, 500, 600, 600)]),  # 1 of 2
        ([(0, 0, 10, 10)], [(0, 0, 10, 10)]),  # 1 of 1
        ([], [(0, 0, 10, 10)]),  # no GT: does not count
    ]
    assert roi_recall(questions) == pytest.approx(2 / 3)
    assert roi_recall([([], [])]) is None
    assert roi_recall([(gts, [(20, 20, 40, 40)])], threshold=0.25) == 0.5


def test_peak_hit_uses_the_argmax_pixel_and_a_margin():
    image = np.zeros((50, 80), dtype=np.float32)
    image[12, 40] = 1.0
    assert peak_pixel(image) == (40, 12)
    assert peak_hit(image, (35, 10, 45, 20))
    assert not peak_hit(image, (41, 10, 50, 20))  # just right of the peak
    assert peak_hit(image, (41, 10, 50, 20), margin=1)
    assert not peak_hit(image, (30, 13, 50, 20))  # exclusive bottom/top edges: y=12 is above
    flat = np.ones((4, 4))
    assert peak_pixel(flat) == (0, 0)  # ties: first in row-major order
    with pytest.raises(ValueError):
        peak_pixel(np.zeros(5))


def test_mean_skips_missing_values():
    assert mean([1, None, 3]) == 2.0
    assert mean([None]) is None


def test_summarize_records():
    records = [
        {"correct": True, "category": "a", "forward_passes": 4, "seconds": 1.0, "chosen_index": 0,
         "gt_boxes": [[0, 0, 10, 10]], "ranked_boxes": [[50, 50, 60, 60], [0, 0, 10, 10]],
         "selected_boxes": [[50, 50, 60, 60]], "peak_hits": [True]},
        {"correct": False, "category": "b", "forward_passes": 6, "seconds": 3.0, "chosen_index": None,
         "gt_boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "ranked_boxes": [[0, 0, 30, 30]],
         "selected_boxes": [[0, 0, 30, 30]], "peak_hits": [False, False]},
        {"correct": False, "category": "b", "forward_passes": None, "seconds": 0.5, "chosen_index": None,
         "error": "boom", "ranked_boxes": None},
    ]
    summary = summarize(records)
    assert summary["n"] == 3 and summary["accuracy"] == pytest.approx(1 / 3)
    assert summary["accuracy_by_category"] == {"a": 1.0, "b": 0.0}
    assert summary["forward_passes"] == 5.0 and summary["seconds"] == 1.5
    assert summary["roi_recall_ranked"] == 1.0  # 3 of 3 GT boxes covered by some ranked ROI
    assert summary["roi_recall_selected"] == pytest.approx(2 / 3)  # the first question's choice missed
    assert summary["peak_hit_rate"] == pytest.approx(1 / 3)
    assert summary["unparsed_answers"] == 1 and summary["errors"] == 1
    # regions: the selected boxes; question 1 IoU 0, question 2 (1/9 + 1/9) / 2; the error record has none
    assert summary["region_miou"] == pytest.approx((0 + 1 / 9) / 2) and summary["region_hit_rate"] == 0.0
    assert summary["region_area_ratio"] == 9.0
    vanilla = summarize([{"correct": True, "category": "a", "forward_passes": 0, "seconds": 1.0, "chosen_index": 1,
                          "ranked_boxes": None}])
    assert vanilla["roi_recall_ranked"] is None and vanilla["peak_hit_rate"] is None
    assert vanilla["region_miou"] is None and vanilla["region_by_target_count"] == {}  # the plain answer has none
    found = summarize([{**records[0], "answer_view": "none", "chosen_index": None, "correct": False}, records[2]])
    assert found["unparsed_answers"] == 0  # focus-find answers nothing: nothing left unparsed
    assert found["accuracy"] is None and found["accuracy_by_category"] == {}  # and has no accuracy, not 0
    assert found["region_miou"] == 0.0  # its regions are scored
    mixed = summarize([{**records[0], "answer_view": "none"}, {**records[1], "answer_view": "crop"}])
    assert mixed["accuracy"] == 0.5  # a run that answers some questions keeps its accuracy


def test_region_iou_takes_each_targets_best_region():
    gt = [[0, 0, 10, 10], [100, 100, 120, 120]]
    # the first target's best region is the exact box (IoU 1), not the loose one; the second gets none overlapping
    matches = region_matches(gt, [[0, 0, 20, 20], [0, 0, 10, 10], [300, 300, 310, 310]])
    assert matches == [(1.0, 1.0), (0.0, None)]
    # one region may serve two targets; a region 4x the object's area gives a ratio of 4
    assert region_matches([[0, 0, 10, 10], [10, 10, 20, 20]], [[0, 0, 20, 20]]) == [(0.25, 4.0), (0.25, 4.0)]
    assert region_matches(gt, []) == [(0.0, None), (0.0, None)]  # no region handed out: IoU 0


def test_region_scores_average_per_question_then_over_questions():
    scores = region_scores([
        ([[0, 0, 10, 10]], [[0, 0, 10, 10]]),  # IoU 1
        ([[0, 0, 10, 10], [50, 50, 60, 60]], [[0, 0, 20, 20]]),  # IoUs 0.25 and 0: question mean 0.125
        ([], [[0, 0, 5, 5]]),  # no GT boxes: left out
        ([[0, 0, 10, 10]], []),  # no region: 0
    ])
    assert scores["region_miou"] == pytest.approx((1 + 0.125 + 0) / 3)  # not the pooled (1 + .25 + 0 + 0) / 4
    assert scores["region_hit_rate"] == pytest.approx(1 / 4)  # pooled over the four GT boxes
    assert scores["region_area_ratio"] == pytest.approx(2.5)  # median of the ratios 1 and 4
    assert scores["region_by_target_count"] == {
        "1": {"miou": 0.5, "hit_rate": 0.5, "area_ratio": 1.0},
        "2": {"miou": 0.125, "hit_rate": 0.0, "area_ratio": 4.0},
    }
    assert region_scores([]) == {"region_miou": None, "region_hit_rate": None, "region_area_ratio": None,
                                 "region_by_target_count": {}}


def test_peak_cell_hit_judges_the_map_at_its_own_resolution():
    from focus_engine.grid import GridGeometry, RelevanceMap

    grid = np.zeros((4, 4), dtype=np.float32)
    grid[1, 2] = 1.0  # the cell x 200..300, y 100..200 of a 400x400 image
    rmap = RelevanceMap(grid=grid, geometry=GridGeometry.uniform((400, 400), (4, 4)), target="x")
    assert peak_cell_hit(rmap, (210, 110, 230, 130))  # a small object inside the cell, off its centre
    assert not peak_hit(rmap.to_image(), (210, 110, 230, 130))  # the upsampled argmax is the cell centre
    assert peak_cell_hit(rmap, (290, 190, 320, 220))  # overlapping the cell's corner
    assert not peak_cell_hit(rmap, (300, 100, 340, 140))  # the next cell (exclusive right edge)
    assert peak_cell_hit(rmap, (302, 100, 340, 140), margin=3)


def test_hrbench_is_scored_per_cycle_then_averaged():
    """HR-Bench's VLMEvalKit evaluation: accuracy overall and per category
    within each cycle_category, then the mean over the cycles."""
    from focus_engine.bench.metrics import official_scores

    records = ([{"cycle": "0", "category": "FSP", "correct": c} for c in (True, True, False, False)]
               + [{"cycle": "0", "category": "FCP", "correct": True}]
               + [{"cycle": "1", "category": "FSP", "correct": c} for c in (True, False)]
               + [{"cycle": "1", "category": "FCP", "correct": c} for c in (False, False, False)])
    scores = official_scores(records)["hrbench_cycles"]
    assert scores["per_cycle"]["0"] == {"all": 0.6, "FSP": 0.5, "FCP": 1.0}
    assert scores["per_cycle"]["1"] == {"all": 0.2, "FSP": 0.5, "FCP": 0.0}
    assert scores["mean_over_cycles"] == pytest.approx({"all": 0.4, "FSP": 0.5, "FCP": 0.5})
    assert "hrbench_cycles" not in official_scores([{"category": "x", "correct": True}])


def test_mme_realworld_is_scored_per_task_and_subtask():
    from focus_engine.bench.metrics import official_scores

    records = [{"category": "Perception", "subtask": "Monitoring", "correct": c} for c in (True, False)] + \
        [{"category": "Reasoning", "subtask": "Monitoring", "correct": True}]
    assert official_scores(records)["accuracy_by_task_and_subtask"] == {
        "Perception/Monitoring": 0.5, "Reasoning/Monitoring": 1.0}
