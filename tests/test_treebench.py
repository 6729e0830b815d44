"""TreeBench as downloaded (TreeBench.tsv of HaochenWang/TreeBench): the
loader on small files in its layout, its answer reading and its scores
(accuracy per Perception/Reasoning subtask, mIoU) as VLMEvalKit computes
them, and clear errors for a malformed file."""

from __future__ import annotations

import base64
import csv
import io

import pytest
from PIL import Image

from focus_engine.bench.datasets import IMAGE_OPTION_LETTERS, detect_kind, load_dataset
from focus_engine.bench.metrics import treebench_iou, treebench_scores
from focus_engine.errors import FocusInputError
from focus_engine.reading import read_choice, treebench_choice

# the columns the official evaluation reads, then the letter columns VLMEvalKit's loader reads now
HEADER = ("index", "image", "question", "multi-choice options", "answer", "category", "target_instances",
          "A", "B", "C", "D")


def _jpeg_base64(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _write(path, rows, header=HEADER):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


# questions in the planted test model's vocabulary (its tokenizer knows "red square", not "umbrella")
ROWS = [
    [0, _jpeg_base64((200, 20, 20)), "What colour is the red square?", "A. blue\nB. red\nC. green\nD. white", "B",
     "Perception/Attributes", "[[10, 8, 30, 20]]", "blue", "red", "green", "white"],
    # two objects, float boxes; the letter columns slipped (an option run into A), the text is the source
    [1, _jpeg_base64((20, 20, 200)), "Is the red square left of the blue square?", "A. He is standing. B. He is lying down.\nC. sitting",
     "C", "Reasoning/Perspective Transform", "[[1.6, 2.2, 12.4, 9.9], [40, 20, 60, 40]]",
     "He is standing. B. He is lying down.", "sitting", "", ""],
    # the options only in the image; its image is row 0's, stored once
    [2, "0", "Recognize the question and options in the image and answer it.", "", "E", "Perception/OCR",
     "[[0, 0, 64, 48]]", "", "", "", ""],
]


def test_treebench_tsv_loads_as_downloaded(tmp_path):
    path = _write(tmp_path / "TreeBench.tsv", ROWS)
    assert detect_kind(path) == "treebench" and detect_kind(tmp_path) == "treebench"
    items = load_dataset(path)
    assert [i.id for i in items] == ["0", "1", "2"] and {i.dataset for i in items} == {"TreeBench"}
    first, second, ocr = items
    assert first.options == ["blue", "red", "green", "white"] and first.answer == "red"
    assert (first.category, first.meta["group"]) == ("Attributes", "Perception")
    assert first.target_boxes == [(10, 8, 30, 20)] and first.answer_reading == "treebench"
    assert second.options == ["He is standing.", "He is lying down.", "sitting"] and second.answer == "sitting"
    assert second.category == "Perspective Transform" and second.meta["group"] == "Reasoning"
    assert second.target_boxes == [(2, 2, 12, 10), (40, 20, 60, 40)]  # pixels, rounded
    assert ocr.options == [f"the option marked {c} in the image" for c in IMAGE_OPTION_LETTERS]
    assert ocr.answer_letter == "E" and ocr.meta["options_in_image"] and not first.meta["options_in_image"]
    assert first.load_image().size == (64, 48) and ocr.load_image().getpixel((5, 5))[0] > 150  # row 0's image


def test_the_letter_columns_serve_where_the_options_text_is_missing(tmp_path):
    header = tuple(c for c in HEADER if c != "multi-choice options")
    rows = [[r for i, r in enumerate(row) if i != 3] for row in ROWS[:1]]
    (item,) = load_dataset(_write(tmp_path / "TreeBench.tsv", rows, header))
    assert item.options == ["blue", "red", "green", "white"] and item.correct_index == 1


@pytest.mark.parametrize("column, value, message", [
    ("target_instances", "[[10, 8, 30", "field 'target_instances' is not a readable list"),
    ("target_instances", "[[30, 8, 10, 20]]", "field 'target_instances' holds [30, 8, 10, 20]"),
    ("target_instances", "[[10, 8, 30]]", "each box is [x1, y1, x2, y2]"),
    ("target_instances", '{"box": 1}', "must be a list of [x1, y1, x2, y2] boxes"),
    ("answer", "Q", "field 'answer' is 'Q'"),
    ("multi-choice options", "blue or red", "field 'multi-choice options' does not list options"),
])
def test_a_malformed_row_names_the_file_the_row_and_the_field(tmp_path, column, value, message):
    row = list(ROWS[0])
    row[HEADER.index(column)] = value
    if column == "multi-choice options":
        row[HEADER.index("A"):] = ["", "", "", ""]  # no letter columns to fall back on
    path = _write(tmp_path / "TreeBench.tsv", [row])
    with pytest.raises(FocusInputError, match="TreeBench.tsv: row 0") as err:
        load_dataset(path)
    assert message in str(err.value)


def test_a_file_without_the_boxes_or_options_says_which_columns_it_lacks(tmp_path):
    path = _write(tmp_path / "TreeBench.tsv", [[0, _jpeg_base64((0, 0, 0)), "Q?", "A", "Perception/OCR", "[]"]],
                  ("index", "image", "question", "answer", "category", "target_instances"))
    with pytest.raises(FocusInputError, match=r"missing column\(s\) \['multi-choice options \(or A, B, ...\)'\]"):
        load_dataset(path)
    no_boxes = _write(tmp_path / "no_boxes.tsv", [[0, _jpeg_base64((0, 0, 0)), "Q?", "A. a\nB. b", "A"]],
                      ("index", "image", "question", "multi-choice options", "answer"))
    with pytest.raises(FocusInputError, match=r"missing column\(s\) \['category', 'target_instances'\]"):
        load_dataset(no_boxes, kind="treebench")


@pytest.mark.parametrize("answer, chosen", [
    ("<think>the sign is red</think><answer>B</answer>", 1),  # the tag's content is read
    ("<answer>C. Front right</answer>", 2),
    ("The answer is D", 3),  # its prefixes go first ("The answer is" holds a capital T, no option letter)
    ("Blue", 1),  # the first capital A-E anywhere, as its pattern reads it
    ("a", 0),  # a bare letter inside "(A)"
    ("it is certainly the one on the left side of the small table there", None),  # long, no capital A-E
    ("<answer>E</answer>", None),  # a letter beyond this question's options
])
def test_answers_are_read_as_treebench_reads_them(answer, chosen):
    options = ["red", "blue", "green", "white"]
    assert treebench_choice(answer, options) == chosen
    assert read_choice(answer, options, "treebench") == chosen


def test_treebench_iou_as_its_evaluation_scores_a_question():
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    assert treebench_iou(gt, [[0, 0, 10, 10]]) == pytest.approx(0.5)  # (1 + 0) / 2 targets
    assert treebench_iou(gt, [[0, 0, 10, 10], [20, 20, 30, 30], [90, 90, 99, 99]]) == 1.0  # extra boxes: free
    assert treebench_iou(gt, []) == 0.0
    assert treebench_iou([], [[0, 0, 5, 5]]) == 1.0 and treebench_iou([], []) == 0.0


def test_treebench_scores_per_group_overall_and_miou():
    records = [
        {"treebench_group": "Perception", "category": "OCR", "correct": True,
         "gt_boxes": [[0, 0, 10, 10]], "selected_boxes": [[0, 0, 10, 10]]},
        {"treebench_group": "Perception", "category": "OCR", "correct": False,
         "gt_boxes": [[0, 0, 10, 10]], "selected_boxes": [[0, 0, 20, 20]]},
        {"treebench_group": "Reasoning", "category": "Ordering", "correct": True,
         "gt_boxes": [[0, 0, 10, 10]], "selected_boxes": None, "error": "boom"},  # an error: IoU 0, still counted
    ]
    scores = treebench_scores(records)
    assert scores["Perception"] == {"OCR": 0.5} and scores["Reasoning"] == {"Ordering": 1.0}
    assert scores["Overall"] == pytest.approx(2 / 3)
    assert scores["mIoU"] == pytest.approx((1 + 0.25 + 0) / 3)
    plain = treebench_scores([{**r, "selected_boxes": None} for r in records])
    assert plain["mIoU"] is None and plain["Overall"] == pytest.approx(2 / 3)  # the plain answer has no regions


def test_a_run_on_treebench_reports_its_official_scores(planted_small, tmp_path):
    from focus_engine.bench.runner import run_benchmark

    items = load_dataset(_write(tmp_path / "TreeBench.tsv", ROWS[:2]))
    result = run_benchmark(planted_small, items, "vanilla,focus", n_steps_list=(1,), progress=False)
    plain, focus = (run.metrics["treebench"] for run in result.runs)
    assert [r["treebench_group"] for r in result.runs[0].records] == ["Perception", "Reasoning"]
    assert set(plain) == {"Perception", "Reasoning", "Overall", "mIoU"} and plain["mIoU"] is None
    assert set(plain["Perception"]) == {"Attributes"} and set(plain["Reasoning"]) == {"Perspective Transform"}
    records = result.runs[1].records
    expected = sum(treebench_iou(r["gt_boxes"], r["selected_boxes"] or []) for r in records) / len(records)
    assert all(r["selected_boxes"] for r in records) and focus["mIoU"] == pytest.approx(expected)


def test_focus_bench_run_takes_treebench_tsv_with_the_paper_preset(tmp_path, capsys):
    """The command docs/command_line.md gives: the TSV detected, the paper's
    "other" settings (it has none for TreeBench), the official scores and
    the region columns in the report."""
    import json

    from focus_engine.cli import main

    data = _write(tmp_path / "TreeBench.tsv", [ROWS[0]])
    out = tmp_path / "out"
    code = main(["bench", "run", "--data", str(data), "--methods", "vanilla,focus", "--n-steps", "1",
                 "--preset", "paper", "--max-new-tokens", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert any(line.startswith("run ") and "mIoU" in line for line in printed.splitlines())  # region columns
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["preset_dataset"] == "other"
    official = [entry["treebench"] for entry in results["summary"]]
    assert [o["Overall"] is not None for o in official] == [True, True]
    assert official[0]["mIoU"] is None and official[1]["mIoU"] is not None
