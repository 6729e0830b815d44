"""The demo model's training tools (tools/demo_model_data.py,
tools/train_demo_model.py) on a bank of three world items and a tiny model:
the command line runs every stage and saves a folder ``load_mllm`` reads, and
the auxiliary losses are wired so that training lowers them. The real
training run is hours long and not part of the tests."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tools import demo_model_data
from tools import train_demo_model as trainer

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--vision-hidden", "64", "--vision-layers", "1", "--text-hidden", "64", "--text-layers", "2",
        "--attention-layers", "0,1", "--batch", "4", "--vision-batch", "4"]
EVERY_TASK = {"instruct": {task: 1.0 for task in ("caption", "crop_mc", "scene_mc", "yesno", "scene_yesno",
                                                  "targets", "text_mc")}}  # no union crops among three items


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bank")
    subprocess.run([sys.executable, "-m", "tools.demo_model_data", "--seed", "7", "--n", "3", "--out", str(folder)],
                   check=True, capture_output=True, cwd=ROOT)
    return folder


def test_the_bank_holds_global_views_and_crops_with_their_objects(bank):
    pixels, scenes = demo_model_data.load_bank(bank)
    assert len(scenes) == 3 and pixels.shape[1:] == (224, 224, 3) and pixels.dtype == np.uint8
    for scene in scenes:
        kinds = [view["kind"] for view in scene["views"]]
        assert kinds[0] == "global" and "crop" in kinds
        for view in scene["views"]:
            assert 0 <= view["pixels"] < len(pixels)
            for shown in view["objects"]:
                x0, y0, x1, y1 = shown["box"]
                assert -1 <= x0 < x1 <= 225 and -1 <= y0 < y1 <= 225
        focused = [v for v in scene["views"] if v["kind"] == "crop"]
        assert all(v["focus"] in [o["index"] for o in v["objects"]] for v in focused)


def test_patch_labels_and_object_masks(bank):
    _, scenes = demo_model_data.load_bank(bank)
    vocab = trainer.build_tokenizer().get_vocab()
    scene = scenes[0]
    crop = next(v for v in scene["views"] if v["kind"] == "crop")
    mask = trainer.object_patches(scene, crop, [crop["focus"]]).reshape(16, 16)
    shown = next(o for o in crop["objects"] if o["index"] == crop["focus"])
    x0, y0, x1, _ = shown["box"]
    rows, cols = np.nonzero(mask)
    cell = 224 / 16
    assert mask.any() and cols.min() * cell <= x0 + cell and (cols.max() + 1) * cell >= x1 - cell
    assert rows.min() * cell <= y0 + cell
    # in the whole-scene view objects are a few pixels wide: their shape is not taught there
    whole = scene["views"][0]
    labels = trainer.patch_labels(scene, whole, vocab)
    small = [o for o in whole["objects"] if o["size"] < trainer.READABLE_SHAPE]
    assert small and (labels["colour"] != vocab["background"]).any()
    for obj in small:
        assert labels["kind"].reshape(-1)[trainer.object_patches(scene, whole, [obj["index"]])].max() == -1


def test_text_answers_name_a_sign_letter_as_such():
    samples = trainer.Samples([], random.Random(0), answer_style="text")
    text, answer = samples.mc("Which letter is on the red sign?", "A", list(trainer.LETTERS))
    assert answer == "the letter A" and "A. " in text
    _, answer = samples.mc("What is the shape of the red object?", "star", list(trainer.SHAPES))
    assert answer == "star"
    letters = trainer.Samples([], random.Random(0), answer_style="letter")
    text, answer = letters.mc("Which letter is on the red sign?", "A", list(trainer.LETTERS))
    assert answer in "ABCD" and f"{answer}. A" in text


def test_the_trainer_runs_every_stage_and_saves_a_loadable_llava(bank, tmp_path):
    from focus_engine import load_mllm

    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "tools.train_demo_model", "--bank", str(bank), "--out",
                    str(out), "--vision-steps", "2", "--align-steps", "2", "--instruct-steps", "3", *TINY,
                    "--mix", json.dumps(EVERY_TASK)], check=True, capture_output=True, cwd=ROOT)
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["stage"]) for r in rows] == [(0, "vision"), (6, "instruct")]  # logged every 25 and last
    assert "lm" not in rows[0] and all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    assert {"lm", "align"} <= set(rows[-1])  # the auxiliary losses: test_the_auxiliary_losses_fall_when_trained
    meta = json.loads((out / "model" / "focus_demo.json").read_text())
    assert meta["trained_by"] == "tools/train_demo_model.py" and meta["args"]["text_layers"] == 2
    mllm = load_mllm(str(out / "model"), device="cpu", dtype="fp32")
    assert mllm.family == "llava"
    pixels, scenes = demo_model_data.load_bank(bank)
    from PIL import Image

    view = Image.fromarray(pixels[scenes[0]["views"][0]["pixels"]])
    relevance = mllm.relevance_map(view, "red sign")
    assert relevance.grid.shape == (16, 16)


def test_attention_layers_outside_the_model_are_refused(bank, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tools.train_demo_model", "--bank", str(bank),
                           "--out", str(tmp_path / "x"), "--text-layers", "2", "--attention-layers", "1,2"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "must lie in 0..1" in done.stderr


def test_the_auxiliary_losses_fall_when_trained(bank, tmp_path):
    args = trainer.build_parser().parse_args(["--bank", str(bank), "--out", str(tmp_path), *TINY, "--lr", "3e-3"])
    torch.manual_seed(0)
    run = trainer.Trainer(args)
    run.args.mix = {"instruct": {"crop_mc": 0.5, "yesno": 0.5}}
    batch = run.batch("instruct")
    while not batch["attend"] or not batch["value_targets"]:
        batch = run.batch("instruct")
    optimiser = torch.optim.Adam(run.model.parameters(), lr=3e-3)
    first = None
    for _ in range(12):
        parts = run.losses(batch)
        total = parts["attention"] + parts["values"] + parts["align"]
        first = first if first is not None else {k: float(parts[k].detach()) for k in ("attention", "values", "align")}
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    last = {k: float(parts[k].detach()) for k in first}
    assert all(last[k] < first[k] for k in first), (first, last)
    # the attention loss is -log of the attention mass on the asked object's patches
    assert 0 < math.exp(-last["attention"]) <= 1


def _existence_counts(bank, colour_only: bool) -> dict[str, int]:
    """400 existence questions on views with objects: each answer checked
    against the view, and which word a No is decided by."""
    _, scenes = demo_model_data.load_bank(bank)
    samples = trainer.Samples(scenes, random.Random(3))
    counts = {"yes": 0, "colour decides": 0, "kind decides": 0}
    for _ in range(400):
        scene = samples.rng.choice(scenes)
        view = samples.rng.choice([v for v in scene["views"] if v["objects"]])
        text, answer = samples.existence(scene, view, colour_only=colour_only)
        colour, noun = text.split("Is there a ")[1].split(" in the image")[0].split()
        shown = [scene["objects"][o["index"]] for o in view["objects"]]
        kind_of = trainer.Samples.phrase_kind

        def kind_matches(o):
            return noun == "object" or (noun == "sign" and o["kind"] == "sign") or kind_of(o) == noun

        truth = any(o["colour"] == colour and kind_matches(o) for o in shown)
        assert answer == ("Yes" if truth else "No"), (text, answer)
        counts["yes"] += truth
        counts["colour decides"] += not truth and any(kind_matches(o) for o in shown)
        counts["kind decides"] += not truth and any(o["colour"] == colour for o in shown)
    return counts


def test_existence_questions_need_both_the_colour_and_the_kind(bank):
    counts = _existence_counts(bank, colour_only=False)
    # about half Yes; every No is decided by one word the crop contradicts
    assert 150 <= counts["yes"] <= 250 and counts["colour decides"] >= 80 and counts["kind decides"] >= 40, counts


def test_colour_only_existence_questions_are_decided_by_the_colour(bank):
    counts = _existence_counts(bank, colour_only=True)
    # half Yes; every No asks for a kind that is in view, in a colour that no such object has
    assert 150 <= counts["yes"] <= 250 and counts["colour decides"] == 400 - counts["yes"], counts


def test_value_phrase_pulls_the_noun_onto_the_objects_the_phrase_names(bank, tmp_path):
    args = trainer.build_parser().parse_args(["--bank", str(bank), "--out", str(tmp_path), *TINY, "--value-phrase"])
    run = trainer.Trainer(args)
    run.args.mix = {"instruct": {"yesno": 0.5, "scene_yesno": 0.5}}
    drawn = []
    draw = run.samples.draw
    run.samples.draw = lambda kind: drawn.append(draw(kind)) or drawn[-1]
    counts = {"named": 0, "none named": 0}
    for _ in range(5):
        drawn.clear()
        batch = run.batch("instruct")
        targets = {(row, position): positive for row, position, positive in batch["value_targets"]}
        for row, (pixels, _, _, words, about) in enumerate(drawn):
            scene, view = run.view_of_pixels[pixels]
            ids = batch["input_ids"][row].tolist()
            (colour, _), (noun, _) = words
            last = lambda word: len(ids) - 1 - ids[::-1].index(run.vocab[word])  # noqa: E731
            labels = trainer.patch_labels(scene, view, run.vocab)["colour"].reshape(-1)
            if (labels == run.vocab[colour]).any():  # the colour word still matches every patch of its colour
                assert torch.equal(targets[(row, last(colour))], torch.from_numpy(labels == run.vocab[colour]))
            if about:  # a Yes: the noun matches the named objects only, readable or not
                assert torch.equal(targets[(row, last(noun))],
                                   torch.from_numpy(trainer.object_patches(scene, view, about)))
                counts["named"] += 1
            else:  # a No names nothing: no target for the noun
                assert (row, last(noun)) not in targets
                counts["none named"] += 1
    assert counts["named"] >= 5 and counts["none named"] >= 5, counts


def test_spatial_questions_name_two_objects_apart_and_answer_their_order(bank):
    _, scenes = demo_model_data.load_bank(bank)
    samples = trainer.Samples(scenes, random.Random(5), answer_style="text")
    answers = {"left": 0, "right": 0}
    for _ in range(200):
        pixels, text, answer, _, about = samples.draw("spatial_mc")
        scene, view = next((s, v) for s in scenes for v in s["views"] if v["pixels"] == pixels)
        shown = {o["index"]: o for o in view["objects"]}
        first, second = (shown[i] for i in about)
        one, two = (scene["objects"][i] for i in about)
        assert text.startswith(f"Is the {one['colour']} {samples.phrase_kind(one)} to the left or to the right "
                               f"of the {two['colour']} {samples.phrase_kind(two)}?"), text
        # each phrase names one object in view: its colour is unique there
        colours = [scene["objects"][i]["colour"] for i in shown]
        assert colours.count(one["colour"]) == 1 and colours.count(two["colour"]) == 1
        x_first, x_second = ((o["box"][0] + o["box"][2]) / 2 for o in (first, second))
        assert abs(x_first - x_second) >= 0.15 * 224
        assert answer == ("left" if x_first < x_second else "right")
        answers[answer] += 1
    assert min(answers.values()) >= 60, answers
