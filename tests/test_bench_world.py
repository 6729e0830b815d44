"""The procedural VQA world: determinism, uniqueness of the referring
attribute, geometry of targets, legibility, and the V*Bench folder it writes."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from PIL import Image

from focus_engine.bench.world import (
    BACKGROUNDS, QUESTION_TEMPLATES, SceneObject, WorldSpec, crop_around, generate_item, generate_items,
    item_rng, make_synthetic, render_background, render_objects,
)
from focus_engine.errors import FocusConfigError, FocusInputError

SMALL = WorldSpec(scene_long_side=(520, 700), distractors=(8, 14),
                  question_mix={"label": 0.2, "shape": 0.2, "colour": 0.2, "spatial": 0.4})
"""Small scenes keep the tests fast; the geometry rules are the same."""


@pytest.fixture(scope="module")
def items():
    return list(generate_items(SMALL, seed=11, n=24))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_same_seed_and_index_give_the_same_item():
    a, b = generate_item(SMALL, 4, 2), generate_item(SMALL, 4, 2)
    assert np.array_equal(_pixels(a.image), _pixels(b.image))
    assert (a.question, a.options, a.target_boxes) == (b.question, b.options, b.target_boxes)
    # an item does not depend on which items were generated before it
    assert generate_item(SMALL, 4, 2).target_boxes == list(generate_items(SMALL, 4, 3))[2].target_boxes


def test_seeds_and_indices_are_independent():
    first = [generate_item(SMALL, 1, i) for i in range(4)]
    second = [generate_item(SMALL, 2, i) for i in range(4)]
    for a, b in zip(first, second):
        assert a.image.size != b.image.size or not np.array_equal(_pixels(a.image), _pixels(b.image))
    assert [a.target_boxes for a in first] != [b.target_boxes for b in second]
    assert len({tuple(it.target_boxes[0]) for it in first}) == 4
    draws = [item_rng(s, i).random() for s, i in itertools.product((1, 2), (0, 1))]
    assert len(set(draws)) == 4


def _referring_holders(item, objects):
    """Objects that fit the question's referring expression."""
    if item.subtype in ("label", "shape"):
        colour = item.target_names[0].split()[0]
        return [[o for o in objects if o.colour == colour]]
    if item.subtype == "colour":
        return [[o for o in objects if o.kind == "shape" and o.shape == item.target_names[0]]]
    return [[o for o in objects if o.colour == name.split()[0]] for name in item.target_names]


def test_referring_attribute_is_unique_and_answer_matches_target(items):
    assert {it.subtype for it in items} == {"label", "shape", "colour", "spatial"}
    for item in items:
        for holders, box in zip(_referring_holders(item, item.objects), item.target_boxes):
            assert len(holders) == 1 and holders[0].box == box, item.question
        target = item.objects[0]
        expected = {"label": target.label, "shape": target.shape, "colour": target.colour}.get(item.subtype)
        if expected is not None:
            assert item.answer == expected == item.options[0]


def test_options_are_distinct_and_all_shown_in_the_scene(items):
    for item in items:
        assert len(set(item.options)) == len(item.options) == (2 if item.subtype == "spatial" else 4)
        if item.subtype == "spatial":
            continue
        others = item.objects[1:]
        shown = {
            "label": {o.label for o in others if o.kind == "sign"},
            "shape": {o.shape for o in others if o.kind == "shape"},
            "colour": {o.colour for o in others},
        }[item.subtype]
        # wrong options and the answer itself appear on distractors:
        # the scene's contents do not give the answer away
        assert set(item.options) <= shown, (item.question, item.options, shown)


def test_questions_follow_the_templates(items):
    for item in items:
        pattern = re.sub(r"\\\{\w+\\\}", r"(\\w+)", re.escape(QUESTION_TEMPLATES[item.subtype]))
        words = re.fullmatch(pattern, item.question).groups()
        # the words filling the template are the target phrases' words
        assert set(words) == {w for name in item.target_names for w in name.split()} - {"sign", "object"}
        assert item.category == ("relative_position" if item.subtype == "spatial" else "direct_attributes")
        assert len(item.target_names) == len(item.target_boxes) == (2 if item.subtype == "spatial" else 1)


def test_objects_lie_inside_the_image_apart_from_each_other(items):
    for item in items:
        width, height = item.image.size
        for obj in item.objects:
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        for a, b in itertools.combinations(item.objects, 2):
            pad = 0.4 * min(a.size, b.size)  # the generator keeps 0.5 object sizes free
            apart = (a.box[2] + pad <= b.box[0] or b.box[2] + pad <= a.box[0]
                     or a.box[3] + pad <= b.box[1] or b.box[3] + pad <= a.box[1])
            assert apart, (item.name, a, b)


def test_targets_are_small_in_the_scene_and_in_a_global_view(items):
    for item in items:
        long_side = max(item.image.size)
        for obj in item.objects[: len(item.target_boxes)]:
            fraction = obj.size / long_side
            assert 0.019 <= fraction <= 0.036
            assert obj.size * 336 / long_side <= 12  # at most ~one 14-px patch of a 336-px view


def test_spatial_pairs_are_clearly_left_or_right(items):
    spatial = [it for it in items if it.subtype == "spatial"]
    assert spatial
    for item in spatial:
        (a, b), width = item.target_boxes, item.image.width
        dx = (a[0] + a[2]) / 2 - (b[0] + b[2]) / 2
        dy = (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
        assert abs(dx) >= 0.15 * width and abs(dy) <= 0.5 * abs(dx)
        assert item.answer == ("left" if dx < 0 else "right")
        assert set(item.options) == {"left", "right"}


def _sign_plate(letter: str, colour: str = "blue", plate: int = 48) -> np.ndarray:
    image = Image.new("RGB", (80, 100), (128, 128, 128))
    render_objects(image, [SceneObject("sign", colour, label=letter, box=(16, 10, 16 + plate, 10 + round(plate * 1.3)))],
                   SMALL.colours)
    return np.asarray(image.convert("L"), dtype=np.float32)[10 : 10 + plate, 16 : 16 + plate]


def test_letters_are_large_and_tell_apart():
    plates = {letter: _sign_plate(letter) for letter in SMALL.labels}
    for letter, plate in plates.items():
        ink = np.abs(plate - np.median(plate)) > 60  # the white glyph on the blue plate
        assert 0.06 < ink.mean() < 0.5, letter
        rows = np.nonzero(ink.any(axis=1))[0]
        assert rows.max() - rows.min() >= 0.55 * plate.shape[0], letter  # the letter fills most of the plate
    for a, b in itertools.combinations(SMALL.labels, 2):
        assert np.mean(np.abs(plates[a] - plates[b]) > 60) > 0.04, (a, b)
    assert np.array_equal(_sign_plate("A"), plates["A"])


def test_letter_contrasts_with_light_and_dark_plates():
    for colour in ("white", "yellow", "black"):
        plate = _sign_plate("H", colour)
        assert plate.max() - plate.min() > 150, colour


@pytest.mark.parametrize("kind", BACKGROUNDS)
def test_backgrounds_stay_away_from_object_colours(kind):
    image = render_background(kind, item_rng(3, 0), (400, 300), list(SMALL.colours.values()))
    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    for rgb in SMALL.colours.values():
        near = np.linalg.norm(pixels - np.array(rgb, np.float32), axis=1) < 50
        assert near.mean() < 0.005, (kind, rgb)


def test_question_mix_selects_subtypes():
    spec = WorldSpec(scene_long_side=(520, 600), distractors=(6, 8), question_mix={"spatial": 1.0})
    assert {it.subtype for it in generate_items(spec, 0, 5)} == {"spatial"}


def test_spec_json_round_trip_and_validation():
    spec = WorldSpec(labels=("A", "B", "C", "D", "E"), scene_long_side=(1024, 4096))
    again = WorldSpec.from_json(spec.to_json())
    assert again == spec and again.hash() == spec.hash() != WorldSpec().hash()
    assert json.loads(spec.to_json())["colours"]["red"] == [220, 30, 30]
    with pytest.raises(FocusConfigError, match="shapes"):
        WorldSpec(shapes=("circle", "blob", "square", "star", "cross"))
    with pytest.raises(FocusConfigError, match="labels"):
        WorldSpec(labels=("A", "bb", "C", "D"))
    with pytest.raises(FocusConfigError, match="scene_long_side"):
        WorldSpec(scene_long_side=(3000, 2000))
    with pytest.raises(FocusInputError, match="unknown WorldSpec field"):
        WorldSpec.from_json('{"colors": {}}')
    with pytest.raises(FocusInputError, match="not valid JSON"):
        WorldSpec.from_json("{nope")


def test_make_synthetic_writes_vstar_layout_deterministically(tmp_path):
    spec = WorldSpec(scene_long_side=(520, 600), distractors=(6, 8))
    manifest = make_synthetic(tmp_path / "a", seed=7, n=4, spec=spec)
    make_synthetic(tmp_path / "b", seed=7, n=4, spec=spec)
    make_synthetic(tmp_path / "c", seed=8, n=4, spec=spec)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 * 2 + 2
    assert {p.parts[0] for p in files} <= {"direct_attributes", "relative_position", "manifest.json", "world_spec.json"}
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    images_c = sorted((tmp_path / "c").rglob("*.jpg"))
    assert all(p.read_bytes() != q.read_bytes() for p in sorted((tmp_path / "a").rglob("*.jpg")) for q in images_c)
    assert manifest["seed"] == 7 and manifest["n"] == 4 and manifest["spec_hash"] == spec.hash()
    assert WorldSpec.from_json((tmp_path / "a" / "world_spec.json").read_text()) == spec
    annotation_path = next((tmp_path / "a").glob("*/*.json"))
    annotation = json.loads(annotation_path.read_text())
    assert {"target_object", "bbox", "question", "options"} <= set(annotation)
    assert all(len(b) == 4 for b in annotation["bbox"]) and annotation["options"][0] == annotation["answer"]
    with pytest.raises(FocusInputError):
        make_synthetic(tmp_path / "d", seed=1, n=0, spec=spec)


def test_crop_around_keeps_the_box_and_zooms():
    item = generate_item(SMALL, 5, 0)
    box = item.target_boxes[0]
    side = max(box[2] - box[0], box[3] - box[1])
    for scale in (2, 4, 8):
        view, inner = crop_around(item, box, scale)
        assert view.width == view.height == min(round(side * scale), *item.image.size)
        assert 0 <= inner[0] < inner[2] <= view.width and 0 <= inner[1] < inner[3] <= view.height
        np.testing.assert_array_equal(
            np.asarray(view.crop(inner)), np.asarray(item.image.crop(box)),
        )
    corner, inner = crop_around(Image.new("RGB", (300, 200)), (0, 0, 20, 20), 4)
    assert corner.size == (80, 80) and inner == (0, 0, 20, 20)
    with pytest.raises(FocusInputError):
        crop_around(item, box, 0.5)
