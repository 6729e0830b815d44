"""Benchmark loaders: the synthetic world through V*Bench's layout, HRBench
TSV with base64 images, MME-RealWorld-Lite JSON, and their error messages."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from focus_engine.bench.datasets import detect_kind, load_dataset
from focus_engine.bench.world import WorldSpec, generate_item, make_synthetic
from focus_engine.errors import FocusInputError

SPEC = WorldSpec(scene_long_side=(520, 640), distractors=(6, 10))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    make_synthetic(folder, seed=21, n=6, spec=SPEC)
    return folder


def test_synthetic_set_round_trips_through_the_vstar_loader(synthetic):
    assert detect_kind(synthetic) == "vstar"
    items = load_dataset(synthetic)
    assert len(items) == 6
    for item in items:
        index = int(item.id.rsplit("_", 1)[1])
        world = generate_item(SPEC, 21, index)
        assert item.id == f"{world.category}/{world.name}" and item.category == world.category
        assert item.question == world.question and item.subtype == world.subtype
        assert sorted(item.options) == sorted(world.options) and item.answer == world.answer
        assert item.answer_letter == "ABCD"[item.correct_index]
        assert item.target_names == world.target_names and item.target_boxes == world.target_boxes
        image = item.load_image()
        assert image.size == world.image.size and image.mode == "RGB"
        diff = np.abs(np.asarray(image, np.int16) - np.asarray(world.image, np.int16))
        assert diff.mean() < 3  # JPEG at quality 95


def test_vstar_options_are_shuffled_deterministically(synthetic):
    first, again = load_dataset(synthetic), load_dataset(synthetic)
    assert [i.options for i in first] == [i.options for i in again]
    assert any(i.correct_index != 0 for i in first)  # correct-first files are not shown correct-first
    other = load_dataset(synthetic, option_seed=5)
    assert [i.options for i in other] != [i.options for i in first]
    assert all(o.answer == f.answer for o, f in zip(other, first))
    kept = load_dataset(synthetic, option_seed=None)
    assert all(i.correct_index == 0 for i in kept)
    assert len(load_dataset(synthetic, limit=2)) == 2


def _png_base64(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _write_tsv(path, rows, header=("index", "question", "answer", "category", "image", "A", "B", "C", "D")):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def test_hrbench_tsv_round_trip(tmp_path):
    path = tmp_path / "hr_bench_4k.tsv"
    _write_tsv(path, [
        [0, "What colour is the car?", "B", "FSP", _png_base64((200, 10, 10)), "blue", "red", "green", "white"],
        [1, 'Which sign says "STOP"?\nPick one.', "D", "FCP", _png_base64((10, 10, 200), (50, 20)), "a", "b", "c", "d"],
        [2, "Same image as row 0?", "A", "FSP", "0", "yes", "no", "maybe", "unsure"],
    ])
    assert detect_kind(path) == "hrbench"
    items = load_dataset(path)
    assert [i.id for i in items] == ["0", "1", "2"] and items[0].dataset == "hr_bench_4k"
    assert items[0].options == ["blue", "red", "green", "white"] and items[0].correct_index == 1
    assert items[0].answer == "red" and items[0].category == "FSP" and items[0].target_boxes == []
    assert items[1].question == 'Which sign says "STOP"?\nPick one.' and items[1].answer_letter == "D"
    assert items[0].load_image().getpixel((5, 5)) == (200, 10, 10)
    assert items[1].load_image().size == (50, 20)
    assert items[2].load_image().getpixel((0, 0)) == (200, 10, 10)  # the image of row 0, stored once
    assert [i.id for i in load_dataset(tmp_path)] == ["0", "1", "2"]  # a folder holding one TSV


def test_hrbench_errors(tmp_path):
    with pytest.raises(FocusInputError, match="does not exist"):
        load_dataset(tmp_path / "missing.tsv")
    empty = tmp_path / "empty.tsv"
    _write_tsv(empty, [])
    with pytest.raises(FocusInputError, match="empty"):
        load_dataset(empty)
    bad = tmp_path / "bad.tsv"
    _write_tsv(bad, [[0, "Q?", "E", "FSP", _png_base64((0, 0, 0)), "a", "b", "c", "d"]])
    with pytest.raises(FocusInputError, match="answer 'E'"):
        load_dataset(bad)
    no_image = tmp_path / "no_image.tsv"
    _write_tsv(no_image, [[0, "Q?", "A", "a", "b"]], header=("index", "question", "answer", "A", "B"))
    with pytest.raises(FocusInputError, match="missing column"):
        load_dataset(no_image)


def _mme_folder(tmp_path, records, images=("scene.jpg", "plot.png")):
    folder = tmp_path / "MME-RealWorld-Lite"
    (folder / "imgs").mkdir(parents=True)
    for name in images:
        Image.new("RGB", (64, 48), (0, 120, 0)).save(folder / "imgs" / name)
    (folder / "MME-RealWorld-Lite.json").write_text(json.dumps(records))
    return folder


MME_RECORDS = [
    {
        "Question_id": "perception/autonomous_driving/objects_identify/0001", "Image": "AutonomousDriving/scene.jpg",
        "Text": "What is in front of the ego car?", "Question Type": "Multiple Choice",
        "Answer choices": ["(A) a bus", "(B) two cars", "(C) a truck", "(D) nothing", "(E) The image does not feature it."],
        "Ground truth": "B", "Task": "Perception", "Subtask": "Autonomous_Driving", "Category": "Objects_Identify",
    },
    {
        "Question_id": "reasoning/diagram_and_table/diagram/0002", "Image": "plot.png", "Text": "Which year is highest?",
        "Answer choices": ["(A) 2029", "(B) 2030", "(C) 2031", "(D) 2032", "(E) None."], "Ground truth": "(C)",
        "Task": "Reasoning", "Subtask": "Diagram and Table", "Category": "diagram",
    },
]


def test_mme_realworld_lite_json_and_image_folder(tmp_path):
    folder = _mme_folder(tmp_path, MME_RECORDS)
    assert detect_kind(folder) == "mme" and detect_kind(folder / "MME-RealWorld-Lite.json") == "mme"
    items = load_dataset(folder)
    assert [i.category for i in items] == ["Perception", "Reasoning"]
    first = items[0]
    assert first.options == ["a bus", "two cars", "a truck", "nothing", "The image does not feature it."]
    assert first.correct_index == 1 and first.answer == "two cars"
    assert first.subtype == "Autonomous_Driving/Objects_Identify" and first.id.endswith("/0001")
    assert items[1].correct_index == 2 and items[1].load_image().size == (64, 48)
    # the image path as given (a subfolder) is tried first, then its file name in imgs/
    assert first.image.path == folder / "imgs" / "scene.jpg"


def test_mme_errors(tmp_path):
    folder = _mme_folder(tmp_path, MME_RECORDS, images=("plot.png",))
    with pytest.raises(FocusInputError, match="not found"):
        load_dataset(folder)
    (folder / "MME-RealWorld-Lite.json").write_text("[]")
    with pytest.raises(FocusInputError, match="empty"):
        load_dataset(folder)
    (folder / "MME-RealWorld-Lite.json").write_text('[{"Question_id": "x"}]')
    with pytest.raises(FocusInputError, match="lacks"):
        load_dataset(folder)
    (folder / "MME-RealWorld-Lite.json").write_text("[{")
    with pytest.raises(FocusInputError, match="not valid JSON"):
        load_dataset(folder)


def test_vstar_errors(tmp_path):
    with pytest.raises(FocusInputError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    (empty / "direct_attributes").mkdir(parents=True)
    with pytest.raises(FocusInputError, match="no V\\*Bench items"):
        load_dataset(empty, kind="vstar")
    with pytest.raises(FocusInputError, match="cannot tell"):
        load_dataset(empty)
    broken = tmp_path / "broken" / "direct_attributes"
    broken.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(broken / "a.jpg")
    (broken / "a.json").write_text("{not json")
    with pytest.raises(FocusInputError, match="a.json is not valid JSON"):
        load_dataset(tmp_path / "broken")
    (broken / "a.json").write_text(json.dumps({"question": "Q?", "options": ["x"]}))
    with pytest.raises(FocusInputError, match="at least two"):
        load_dataset(tmp_path / "broken")
    (broken / "a.json").write_text(json.dumps({"question": "Q?", "options": ["x", "y"], "bbox": [[1, 2, 3]]}))
    with pytest.raises(FocusInputError, match=r"\[x, y, w, h\]"):
        load_dataset(tmp_path / "broken")
    (broken / "a.jpg").unlink()
    (broken / "a.json").write_text(json.dumps({"question": "Q?", "options": ["x", "y"]}))
    with pytest.raises(FocusInputError, match="no image beside it"):
        load_dataset(tmp_path / "broken")
    with pytest.raises(FocusInputError, match="unknown dataset kind"):
        load_dataset(tmp_path / "broken", kind="coco")


# ------------------------------------------------- the datasets as downloaded
def _vstar_pair(folder, stem, *, question="What is the colour of the cup?", bbox=(10, 10, 20, 20), suffix=".jpg",
                size=(200, 100)):
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(folder / f"{stem}{suffix}", format="JPEG")
    (folder / f"{stem}.json").write_text(json.dumps({
        "target_object": ["cup"], "bbox": [list(bbox)], "question": question, "options": ["red", "blue"]}))


def test_vstar_as_downloaded_scores_the_standard_categories(tmp_path, caplog):
    """The dataset repository also holds OCR/ and GPT4V-hard/ (upper-case
    .JPG) and may hold unrelated JSON files: the standard score reads
    direct_attributes + relative_position only, others on request."""
    root = tmp_path / "vstar_bench"
    _vstar_pair(root / "direct_attributes", "sa_1")
    _vstar_pair(root / "direct_attributes", "sa_2")
    _vstar_pair(root / "relative_position", "sa_3")
    _vstar_pair(root / "OCR", "ocr_1", suffix=".JPG")
    _vstar_pair(root / "GPT4V-hard", "hard_1", suffix=".JPG")
    (root / "direct_attributes" / "metadata.json").write_text(json.dumps({"version": 1}))
    with caplog.at_level("WARNING"):
        items = load_dataset(root)
    assert [i.id for i in items] == ["direct_attributes/sa_1", "direct_attributes/sa_2", "relative_position/sa_3"]
    assert "metadata.json" in caplog.text and "GPT4V-hard, OCR left out" in caplog.text
    assert [i.id for i in load_dataset(root, limit=1)] == ["direct_attributes/sa_1"]  # not an extra category first
    everything = load_dataset(root, categories="all")
    assert len(everything) == 5 and {i.category for i in everything} >= {"OCR", "GPT4V-hard"}
    (ocr,) = load_dataset(root, categories=["OCR"])
    assert ocr.image.path.suffix == ".JPG" and ocr.load_image().size == (200, 100)
    with pytest.raises(FocusInputError, match="no category folder nope"):
        load_dataset(root, categories=["nope"])


def test_vstar_boxes_past_the_image_edge_are_clipped(tmp_path):
    root = tmp_path / "vstar"
    _vstar_pair(root / "direct_attributes", "edge", bbox=(180, 90, 50, 40), size=(200, 100))
    _vstar_pair(root / "direct_attributes", "negative", bbox=(-5, -3, 20, 20), size=(200, 100))
    edge, negative = load_dataset(root)
    assert edge.target_boxes == [(180, 90, 200, 100)] and negative.target_boxes == [(0, 0, 15, 17)]


def test_mme_realworld_lite_download_folder(tmp_path):
    """The Lite download: data.zip and data/ (its JSON and imgs/) side by side."""
    download = tmp_path / "MME-RealWorld-Lite"
    data = _mme_folder(tmp_path / "unpacked", MME_RECORDS)
    shutil.copytree(data, download / "data")
    (download / "data.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    assert detect_kind(download) == "mme"
    for kind in ("auto", "mme"):
        items = load_dataset(download, kind=kind)
        assert [i.id for i in items] == [r["Question_id"] for r in MME_RECORDS]
    only_zip = tmp_path / "zip_only"
    only_zip.mkdir()
    (only_zip / "data.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(FocusInputError, match="unpack data.zip"):
        load_dataset(only_zip)


def test_the_full_mme_realworld_release_is_recognised(tmp_path):
    folder = _mme_folder(tmp_path, MME_RECORDS)
    (folder / "MME-RealWorld-Lite.json").rename(folder / "MME_RealWorld.json")
    (folder / "MME_RealWorld_CN.json").write_text(json.dumps(MME_RECORDS[:1]))
    assert detect_kind(folder) == "mme"
    assert len(load_dataset(folder)) == 2  # the English file, not the Chinese one
    folder.joinpath("MME_RealWorld.json").rename(folder / "MME_RealWorld_EN_copy.json")
    assert len(load_dataset(folder)) == 2  # found by name when not the canonical one


def test_mme_image_hint_names_the_cli_option(tmp_path):
    folder = _mme_folder(tmp_path, MME_RECORDS, images=("scene.jpg",))
    with pytest.raises(FocusInputError, match="--image-root"):
        load_dataset(folder)


def test_hrbench_folder_with_both_tsvs_says_how_to_choose(tmp_path):
    row = [0, "Q?", "A", "FSP", _png_base64((0, 0, 0)), "a", "b", "c", "d"]
    _write_tsv(tmp_path / "hr_bench_4k.tsv", [row])
    _write_tsv(tmp_path / "hr_bench_8k.tsv", [row])
    with pytest.raises(FocusInputError, match="hr_bench_4k.tsv, hr_bench_8k.tsv.*give one of them as --data"):
        load_dataset(tmp_path)
    with pytest.raises(FocusInputError, match="give one of them as --data"):
        load_dataset(tmp_path, kind="hrbench")
    assert len(load_dataset(tmp_path / "hr_bench_8k.tsv")) == 1


def test_a_corrupt_tsv_image_names_its_row(tmp_path):
    path = tmp_path / "hr_bench_4k.tsv"
    _write_tsv(path, [[7, "Q?", "A", "FSP", _png_base64((0, 0, 0)), "a", "b", "c", "d"],
                      [42, "Q?", "B", "FSP", "iVBORw0KGgo" + "A" * 80, "a", "b", "c", "d"]])
    good, bad = load_dataset(path)
    assert good.load_image().size == (40, 30)
    with pytest.raises(FocusInputError, match="row with index 42"):
        bad.load_image()


def test_unknown_folders_name_the_cli_option(tmp_path):
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(FocusInputError, match="give --kind vstar, hrbench, mme or treebench"):
        load_dataset(tmp_path / "nothing_here")


def test_official_scores_come_out_of_a_run(planted_small, tmp_path):
    """HR-Bench rows keep their cycle_category, MME-RealWorld questions their
    subtask and its answer reading, so a run reports their own scores."""
    from focus_engine.bench.runner import run_benchmark

    header = ("index", "question", "answer", "category", "image", "A", "B", "C", "D", "cycle_category")
    rows = [[i, "What colour is it?", "A", cat, _png_base64((200, 0, 0)), "red", "blue", "green", "grey", cycle]
            for i, (cat, cycle) in enumerate([("single", "0"), ("cross", "0"), ("single", "1"), ("cross", "1")])]
    _write_tsv(tmp_path / "hr_bench_4k.tsv", rows, header=header)
    hr = run_benchmark(planted_small, load_dataset(tmp_path / "hr_bench_4k.tsv"), "vanilla", progress=False)
    assert [r["cycle"] for r in hr.runs[0].records] == ["0", "0", "1", "1"]
    assert set(hr.runs[0].metrics["hrbench_cycles"]["per_cycle"]) == {"0", "1"}
    mme_items = load_dataset(_mme_folder(tmp_path, MME_RECORDS))
    assert {i.answer_reading for i in mme_items} == {"mme"}
    mme = run_benchmark(planted_small, mme_items, "vanilla", progress=False)
    assert [r["subtask"] for r in mme.runs[0].records] == ["Autonomous_Driving", "Diagram and Table"]
    assert set(mme.runs[0].metrics["accuracy_by_task_and_subtask"]) == {
        "Perception/Autonomous_Driving", "Reasoning/Diagram and Table"}
