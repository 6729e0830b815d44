"""Quick probes of a demo-model checkpoint on held-out world items (a training
aid; the full evaluation is ``focus bench run``): relevance-peak hit rate
(highest map cell overlaps the target, as the benchmark judges it),
multiple-choice accuracy on a crop around the target and on the whole scene,
and the yes/no check on crops with and without the target; with
``--bank``, how much each training task's loss depends on the image (the
loss with each sample's own image vs with the batch's images shuffled: equal
losses mean the language model ignores the image for that task).

    python -m tools.probe_demo_model MODEL_DIR --seed 1 --n 40
    python -m tools.probe_demo_model MODEL_DIR --bank BANK --tasks yesno,crop_mc,caption
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from focus_engine import load_mllm
from focus_engine.reading import choose_option
from focus_engine.bench.metrics import peak_cell_hit
from focus_engine.bench.world import generate_item
from focus_engine.prompts import format_question


def crop_around(image, box, cells: float = 2.5, grid: int = 16):
    side = cells * max(image.size) / grid
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    region = (int(max(0, cx - side / 2)), int(max(0, cy - side / 2)),
              int(min(image.width, cx + side / 2)), int(min(image.height, cy + side / 2)))
    return image.crop(region)


def probe(folder: str, seed: int, n: int, layers: tuple[int, int] | None) -> dict[str, float]:
    mllm = load_mllm(folder)
    hits, crop_ok, scene_ok, yes_pos, yes_neg = [], [], [], [], []
    crop_by_subtype: dict[str, list[bool]] = {}
    for index in range(n):
        item = generate_item(None, seed, index)
        options = list(item.options)
        np.random.default_rng(index).shuffle(options)
        correct = options.index(item.answer)
        for name, box in zip(item.target_names, item.target_boxes):
            rmap = mllm.relevance_map(item.image, name, layers=layers)
            hits.append(peak_cell_hit(rmap, box))
        prompt = format_question(item.question, options)
        scene_ok.append(choose_option(mllm.generate(prompt, images=[item.image], max_new_tokens=4), options) == correct)
        if item.subtype != "spatial":
            crop = crop_around(item.image, item.target_boxes[0])
            answer = mllm.generate(prompt, images=[crop], max_new_tokens=4)
            crop_ok.append(choose_option(answer, options) == correct)
            crop_by_subtype.setdefault(item.subtype, []).append(crop_ok[-1])
            # a crop around an object of another colour, far enough that the target is not in it
            target = next(o for o in item.objects if tuple(o.box) == tuple(item.target_boxes[0]))
            reach = 2.5 * max(item.image.size) / 16
            others = [o for o in item.objects if o.colour != target.colour and max(
                abs(o.box[0] - target.box[0]), abs(o.box[1] - target.box[1])) > reach]
            if not others:
                continue
            other = others[0]
            confidences = mllm.yes_no_confidence(
                [crop, crop_around(item.image, other.box)], [item.target_names[0]] * 2)
            yes_pos.append(confidences[0])
            yes_neg.append(confidences[1])
    result = {
        "peak_hit": float(np.mean(hits)), "crop_accuracy": float(np.mean(crop_ok)),
        "crop_accuracy_by_subtype": {k: f"{sum(v)}/{len(v)}" for k, v in crop_by_subtype.items()},
        "scene_accuracy": float(np.mean(scene_ok)),
        "yes_on_target": float(np.mean(yes_pos)), "yes_elsewhere": float(np.mean(yes_neg)),
        "yes_no_correct": float(np.mean([p > 0.5 for p in yes_pos] + [q < 0.5 for q in yes_neg])),
    }
    return result


def image_reliance(folder: str, bank: str, tasks: list[str], answer_style: str = "letter", batch: int = 48,
                   seed: int = 123) -> dict[str, dict]:
    """Per task: mean per-sample answer loss with the right images and with
    the images shuffled across the batch (training views of ``bank``)."""
    import torch

    from tools import train_demo_model as trainer

    config = json.loads((Path(folder) / "config.json").read_text())
    vision, text = config["vision_config"], config["text_config"]
    args = trainer.build_parser().parse_args([  # the trainer's own defaults, its losses off, the checkpoint's sizes
        "--bank", bank, "--out", folder, "--seed", str(seed), "--init", folder, "--batch", str(batch),
        "--answer-style", answer_style, "--value-weight", "0", "--feature-norm-weight", "0",
        "--attention-weight", "0", "--vision-hidden", str(vision["hidden_size"]),
        "--vision-layers", str(vision["num_hidden_layers"]), "--text-hidden", str(text["hidden_size"]),
        "--text-layers", str(text["num_hidden_layers"])])
    run = trainer.Trainer(args)
    run.model.eval()
    out = {}
    for task in tasks:
        run.args.mix = {"instruct": {task: 1.0}}
        drawn = run.batch("instruct")
        if drawn["pixel_values"] is None:
            raise SystemExit(f"task {task!r} shows no image")
        shuffled = dict(drawn, pixel_values=drawn["pixel_values"][torch.randperm(len(drawn["pixel_values"]))])
        with torch.no_grad():
            out[task] = {"own_images": round(float(run.losses(drawn)[f"lm_{task}"]), 4),
                         "shuffled_images": round(float(run.losses(shuffled)[f"lm_{task}"]), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--layers", default=None, help="start,end (half-open); default: the family's")
    parser.add_argument("--bank", help="measure image reliance per task on this bank's views instead")
    parser.add_argument("--tasks", default="yesno,crop_mc,caption")
    parser.add_argument("--answer-style", default="letter", choices=["letter", "text"],
                        help="how the checkpoint was taught to answer multiple choice")
    args = parser.parse_args()
    if args.bank:
        print(json.dumps(image_reliance(args.folder, args.bank, args.tasks.split(","), args.answer_style)))
        return
    layers = tuple(int(v) for v in args.layers.split(",")) if args.layers else None
    print(json.dumps(probe(args.folder, args.seed, args.n, layers)))


if __name__ == "__main__":
    main()
