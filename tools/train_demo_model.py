"""Trains the embedded demo model: a small real LLaVA
(``LlavaForConditionalGeneration``: CLIP-style vision tower, Llama language
model, a word-level tokenizer built locally, ``focus_engine.testing``) on the
synthetic fine-grained world, from a seed, on a CPU or a GPU.

Three stages, one loop, each drawing samples from a bank of views
(``tools/demo_model_data.py``):

0. ``vision``: the vision tower and projector alone, on the patch-word loss
   below (no language model in the step, so batches are cheap);
1. ``align``: crops -> short captions ("a purple sign with the letter K"),
   with the patch-word and value losses;
2. ``instruct``: multiple choice on ROI-like crops and whole scenes, the yes/no
   existence question FOCUS verifies crops with, the engine's few-shot
   target-extraction prompt, text-only multiple choice (the option lookup on
   its own); ``--mix`` adds ``spatial_mc`` (left/right about any two objects a
   view shows apart) and ``yesno_colour`` (existence questions whose No only
   the colour decides) or reweights any task.

Auxiliary losses (their weights are flags):

- patch-word: every image token's projected feature is pulled, by a
  cosine-softmax over the vocabulary, toward the input embedding of the words
  describing the object under that patch (colour, kind, "object", the letter
  when readable) and toward "background" elsewhere;
- ``--value-weight``: per language layer, the value vectors of the existence
  question's colour and kind words toward those of the image tokens showing
  them (what FOCUS's relevance map reads); ``--value-phrase`` makes the noun's
  target the objects the whole phrase names;
- ``--attention-weight``: at the position predicting the answer, the chosen
  layers' attention toward the patches of the object the answer is about.
  FOCUS itself never reads attention.

What each choice was measured to do, and the chain of runs that made the
shipped model, are in docs/demo_model.md.

    python -m tools.demo_model_data --seed 1000 --n 1000 --out /tmp/bank
    python -m tools.train_demo_model --bank /tmp/bank --out /tmp/demo-model
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tools.demo_model_data import CELLS, SIDE, load_bank
from focus_engine.bench.world import (
    DEFAULT_LABELS, DEFAULT_SHAPES, LETTER_HEIGHT_RATIO, QUESTION_TEMPLATES, SIGN_HEIGHT_RATIO, WorldSpec, spatial_ok,
)
from focus_engine.prompts import EXISTENCE_PROMPT, MC_INSTRUCTION, format_question
from focus_engine.targets import ICL_EXAMPLES, LEAD_IN, build_icl_prompt
from focus_engine.testing import portable_llava_weights, portable_tokenizer_config, tiny_llava, word_tokenizer

WORLD = WorldSpec()
COLOURS = list(WORLD.colours)
SHAPES = list(DEFAULT_SHAPES)
LETTERS = list(DEFAULT_LABELS)
KINDS = ["sign", *SHAPES]
CAPTION_PROMPT = "Describe the object in the centre of the image."
READABLE_LETTER = 14.0  # a letter is taught only when the sign plate is this many view pixels tall
READABLE_SHAPE = 16.0  # an object's kind (shape or sign) is taught only when it is this many view pixels wide:
# in a global view an object is 4-8 px, a fraction of one 14-px patch, and its shape cannot be seen there


# ---------------------------------------------------------------- tokenizer
def corpus_words() -> list[str]:
    """Every word the engine's prompts and the world's texts use."""
    texts = [build_icl_prompt("x"), LEAD_IN, EXISTENCE_PROMPT, MC_INSTRUCTION, CAPTION_PROMPT,
             *QUESTION_TEMPLATES.values(), "USER: ASSISTANT: Yes No left right above below object background",
             "To answer the question, I need to find the and compare their positions.",
             "a with the letter", " ".join(COLOURS + SHAPES + LETTERS + KINDS),
             " ".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + " 0 1 2 3 4 5 6 7 8 9"]
    for question, answer in ICL_EXAMPLES:
        texts += [question, answer]
    import re

    words: list[str] = []
    for text in texts:
        words += re.findall(r"\w+|[^\w\s]", text)
    return list(dict.fromkeys(words + ["\n"]))


def build_tokenizer() -> Any:
    """Word-level, case kept, newlines as tokens: every word the engine's
    prompts and the world's texts use."""
    return word_tokenizer(corpus_words(), lowercase=False, newline_token=True)


# -------------------------------------------------------------------- model
def build_model(tokenizer: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """A fresh LLaVA of the size the arguments ask for, seeing ``SIDE``-px
    views as ``CELLS`` x ``CELLS`` patches."""
    heads = args.text_hidden // 32
    return tiny_llava(
        tokenizer, image_side=SIDE, patch=SIDE // CELLS, vision_hidden=args.vision_hidden,
        vision_layers=args.vision_layers, vision_heads=args.vision_hidden // 32, text_hidden=args.text_hidden,
        text_layers=args.text_layers, heads=heads, kv_heads=heads, intermediate_ratio=2.75, max_positions=2048,
        feature_layer=-1,
    )


# ------------------------------------------------------------------ samples
class Samples:
    """Draws training texts and images from the bank of views."""

    def __init__(self, scenes: list[dict[str, Any]], rng: random.Random, answer_style: str = "letter") -> None:
        self.scenes, self.rng, self.answer_style = scenes, rng, answer_style
        self._having: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # scenes with views of some kinds

    def _obj(self, scene: dict[str, Any], index: int) -> dict[str, Any]:
        return scene["objects"][index]

    @staticmethod
    def phrase_kind(obj: dict[str, Any]) -> str:
        return "sign" if obj["kind"] == "sign" else obj["shape"]

    def caption(self, obj: dict[str, Any]) -> str:
        if obj["kind"] == "sign":
            return f"a {obj['colour']} sign with the letter {obj['label']}"
        return f"a {obj['colour']} {obj['shape']}"

    def mc(self, question: str, correct: str, pool: list[str], k: int = 4) -> tuple[str, str]:
        wrong = self.rng.sample([p for p in pool if p != correct], k - 1)
        options = wrong + [correct]
        self.rng.shuffle(options)
        return format_question(question, options), self._answer(options, correct)

    def _answer(self, options: list[str], correct: str) -> str:
        """The option's letter, or (``answer_style="text"``) its text, which
        the engine and the benchmark match to the option as well; a sign's
        letter as "the letter X", so that a letter that is also an option
        letter ("A") is not read as that option."""
        if self.answer_style != "text":
            return "ABCD"[options.index(correct)]
        return f"the letter {correct}" if correct in LETTERS else correct

    def _scene_view(self, kinds: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
        if kinds not in self._having:  # once per kind set, not per drawn sample
            self._having[kinds] = [s for s in self.scenes if any(v["kind"] in kinds for v in s["views"])]
        having = self._having[kinds]
        if not having:
            raise ValueError(f"the bank has no {kinds} views; build it from more items")
        scene = self.rng.choice(having)
        return scene, self.rng.choice([v for v in scene["views"] if v["kind"] in kinds])

    def _central_object(self, scene: dict[str, Any], view: dict[str, Any]) -> dict[str, Any] | None:
        """The object nearest the view's centre, if clearly nearer than any
        other (crops are jittered, so the crop's focus object need not be the
        central one the caption prompt asks about)."""
        def distance(shown: dict[str, Any]) -> float:
            x0, y0, x1, y1 = shown["box"]
            return math.hypot((x0 + x1) / 2 - SIDE / 2, (y0 + y1) / 2 - SIDE / 2)

        ranked = sorted(view["objects"], key=distance)
        if not ranked or (len(ranked) > 1 and distance(ranked[1]) < distance(ranked[0]) + SIDE / 8):
            return None
        return self._obj(scene, ranked[0]["index"])

    def _unique_colour_focus(self, scene: dict[str, Any], view: dict[str, Any]) -> dict[str, Any] | None:
        """The crop's focus object, if no other object in view shares its colour."""
        if view["focus"] is None:
            return None
        focus = self._obj(scene, view["focus"])
        shown = [self._obj(scene, o["index"]) for o in view["objects"]]
        if focus not in shown or sum(o["colour"] == focus["colour"] for o in shown) != 1:
            return None
        return focus

    def draw(self, kind: str) -> tuple[int | None, str, str, list[tuple[str, str]] | None, list[int]]:
        """(pixel index or None, user text, assistant answer, the existence
        question's (word, patch-label group) pairs or None, the scene indices
        of the objects the answer is about) of one sample."""
        self.words, self.about = None, []
        return (*self._draw(kind), self.words, self.about)

    @staticmethod
    def target_indices(scene: dict[str, Any]) -> list[int]:
        boxes = [list(b) for b in scene["target_boxes"]]
        return [i for i, o in enumerate(scene["objects"]) if list(o["box"]) in boxes]

    def _draw(self, kind: str) -> tuple[int | None, str, str]:
        if kind == "targets":
            return None, *self.target_extraction()
        if kind == "text_mc":
            return None, *self.text_mc()
        if kind == "scene_mc":
            scene, view = self._scene_view(("global",))
            text, answer = self._item_question(scene)
            self.about = self.target_indices(scene)
            return view["pixels"], text, answer
        if kind == "union_mc":
            scene, view = self._scene_view(("union",))
            text, answer = self._item_question(scene)
            self.about = self.target_indices(scene)
            return view["pixels"], text, answer
        if kind == "spatial_mc":  # the world's left/right question about any two objects a view shows apart
            for _ in range(1000):
                scene, view = self._scene_view(("crop", "union", "random"))
                pairs = self.spatial_pairs(scene, view)
                if pairs:
                    break
            else:
                raise ValueError("no view in the bank shows two objects of unique colours apart; build it from more items")
            first, second, side = self.rng.choice(pairs)
            self.about = [first["index"], second["index"]]
            one, two = self._obj(scene, first["index"]), self._obj(scene, second["index"])
            question = QUESTION_TEMPLATES["spatial"].format(colour1=one["colour"], shape1=self.phrase_kind(one),
                                                            colour2=two["colour"], shape2=self.phrase_kind(two))
            return view["pixels"], *self.mc(question, side, ["left", "right"], k=2)
        if kind == "scene_yesno":  # the relevance prefill's own question, on the global view
            scene, view = self._scene_view(("global",))
            return view["pixels"], *self.existence(scene, view)
        while True:
            scene, view = self._scene_view(("crop", "random") if kind == "yesno" else ("crop",))
            if kind == "yesno":
                return view["pixels"], *self.existence(scene, view)
            if kind == "yesno_colour":  # only the colour decides: the binding the mixed yes/no learns slowly
                if not view["objects"]:
                    continue
                return view["pixels"], *self.existence(scene, view, colour_only=True)
            if kind == "caption":
                central = self._central_object(scene, view)
                if central is None:
                    continue
                self.about = [scene["objects"].index(central)]
                return view["pixels"], CAPTION_PROMPT, self.caption(central)
            focus = self._unique_colour_focus(scene, view)
            if focus is None:
                continue
            self.about = [view["focus"]]
            if focus["kind"] == "sign" and self.rng.random() < 0.6:
                question = QUESTION_TEMPLATES["label"].format(colour=focus["colour"])
                return view["pixels"], *self.mc(question, focus["label"], LETTERS)
            if focus["kind"] == "shape":
                question = QUESTION_TEMPLATES["shape"].format(colour=focus["colour"])
                return view["pixels"], *self.mc(question, focus["shape"], SHAPES)

    def text_mc(self) -> tuple[str, str]:
        """A multiple-choice question with its fact stated in words, no image:
        teaches the option lookup (find the option that matches the fact and
        answer with it) apart from reading the image."""
        colour, other = self.rng.sample(COLOURS, 2)
        subtype = self.rng.choice(["label", "shape", "spatial"])
        if subtype == "label":
            letter = self.rng.choice(LETTERS)
            fact = f"a {colour} sign with the letter {letter} ."
            text, answer = self.mc(QUESTION_TEMPLATES["label"].format(colour=colour), letter, LETTERS)
        elif subtype == "shape":
            shape = self.rng.choice(SHAPES)
            fact = f"a {colour} {shape} ."
            text, answer = self.mc(QUESTION_TEMPLATES["shape"].format(colour=colour), shape, SHAPES)
        else:
            shape1, shape2 = self.rng.choice(SHAPES), self.rng.choice(SHAPES)
            side = self.rng.choice(["left", "right"])
            fact = f"the {colour} {shape1} is to the {side} of the {other} {shape2} ."
            question = QUESTION_TEMPLATES["spatial"].format(colour1=colour, shape1=shape1, colour2=other, shape2=shape2)
            text, answer = self.mc(question, side, ["left", "right"], k=2)
        return f"{fact}\n{text}", answer

    def spatial_pairs(self, scene: dict[str, Any], view: dict[str, Any]) -> list[tuple[Any, Any, str]]:
        """(first, second, "left"/"right") for the ordered pairs of shown
        objects the world's spatial question could ask about: each the only
        one of its colour in view (so its phrase names it even where its
        shape is unreadable), clearly apart sideways by the world's own rule,
        with the view as the scene."""
        colours = [self._obj(scene, o["index"])["colour"] for o in view["objects"]]
        named = [o for o, colour in zip(view["objects"], colours) if colours.count(colour) == 1]
        return [(first, second, side) for first in named for second in named if first is not second
                for side in ("left", "right") if spatial_ok(WORLD, (SIDE, SIDE), first["box"], second["box"], side)]

    def _item_question(self, scene: dict[str, Any]) -> tuple[str, str]:
        options = list(scene["options"])
        self.rng.shuffle(options)
        return format_question(scene["question"], options), self._answer(options, scene["answer"])

    def existence(self, scene: dict[str, Any], view: dict[str, Any], colour_only: bool = False) -> tuple[str, str]:
        """The existence question FOCUS asks: half the time about an object in
        view (Yes); else a No that only one word decides: a kind that is in
        view in a colour that is not (the colour must be read: FOCUS verifies
        "red sign" on crops that show other signs), or a colour in view with a
        kind that no object of that colour has. ``colour_only``: Yes, or a No
        that only the colour decides, half and half."""
        shown = [self._obj(scene, o["index"]) for o in view["objects"]]
        if colour_only:
            answer = self.rng.choice(["yes", "colour decides"])
        else:
            draw = self.rng.random()
            answer = "yes" if draw < 0.5 else "colour decides" if draw < 0.8 else "kind decides"
        general = self.rng.random() < 0.4  # "{colour} sign" / "{colour} object", as the world's questions name targets
        absent = [c for c in COLOURS if c not in {o["colour"] for o in shown}] or COLOURS
        if shown and answer == "yes":
            obj = self.rng.choice(shown)
            colour, kind = obj["colour"], self.phrase_kind(obj)
        elif shown and answer == "colour decides":
            colour, kind = self.rng.choice(absent), self.phrase_kind(self.rng.choice(shown))
        else:
            colour = self.rng.choice(shown)["colour"] if shown else None
            missing = [k for k in KINDS if k not in {self.phrase_kind(o) for o in shown if o["colour"] == colour}]
            if shown and missing:
                kind, general = self.rng.choice(missing), False
            else:  # nothing in view, or (a crowded global view) every kind in view in that colour
                colour, kind = self.rng.choice(absent), self.rng.choice(KINDS)
        if general:
            noun = "sign" if kind == "sign" else "object"
            match = lambda o: o["colour"] == colour and (noun == "object" or o["kind"] == "sign")  # noqa: E731
        else:
            noun = kind
            match = lambda o: o["colour"] == colour and self.phrase_kind(o) == kind  # noqa: E731
        self.words = [(colour, "colour"), (noun, "object" if noun == "object" else "kind")]
        self.about = [o["index"] for o in view["objects"] if match(self._obj(scene, o["index"]))]
        return EXISTENCE_PROMPT.format(target=f"{colour} {noun}"), "Yes" if self.about else "No"

    def target_extraction(self) -> tuple[str, str]:
        colour, other = self.rng.sample(COLOURS, 2)
        subtype = self.rng.choice(["label", "shape", "spatial"])
        if subtype == "spatial":
            a, b = f"{colour} {self.rng.choice(SHAPES)}", f"{other} {self.rng.choice(SHAPES)}"
            question = QUESTION_TEMPLATES["spatial"].format(
                colour1=a.split()[0], shape1=a.split()[1], colour2=b.split()[0], shape2=b.split()[1])
            answer = (f"To answer the question, I need to find the {a} and the {b} and compare their positions. "
                      f"{LEAD_IN} {a} and {b}.")
        else:
            target = f"{colour} {'sign' if subtype == 'label' else 'object'}"
            question = QUESTION_TEMPLATES[subtype].format(colour=colour)
            answer = f"To answer the question, I need to find the {target}. {LEAD_IN} {target}."
        return build_icl_prompt(question), " " + answer


def object_patches(scene: dict[str, Any], view: dict[str, Any], indices: list[int]) -> np.ndarray:
    """Flat CELLS x CELLS mask of the patches that show the given objects of
    the scene in this view (a sign's plate only, as in ``patch_labels``)."""
    mask = np.zeros((CELLS, CELLS), dtype=bool)
    for shown in view["objects"]:
        if shown["index"] not in indices:
            continue
        x0, y0, x1, y1 = shown["box"]
        if scene["objects"][shown["index"]]["kind"] == "sign":
            y1 = min(y1, y0 + shown["size"])
        mask[np.ix_(_span(y0, y1), _span(x0, x1))] = True
    return mask.reshape(-1)


def _span(low: float, high: float) -> np.ndarray:
    """Patches whose centre lies in [low, high); the one holding the middle if none."""
    cell = SIDE / CELLS
    centres = (np.arange(CELLS) + 0.5) * cell
    inside = np.nonzero((centres >= low) & (centres < high))[0]
    return inside if len(inside) else np.array([min(CELLS - 1, max(0, int((low + high) / 2 // cell)))])


def patch_labels(scene: dict[str, Any], view: dict[str, Any], vocab: dict[str, int]) -> dict[str, np.ndarray]:
    """Per patch of the view (CELLS x CELLS): the word ids of its colour, kind,
    objectness and letter (-1 = not taught there)."""
    cell = SIDE / CELLS
    labels = {name: np.full((CELLS, CELLS), -1, dtype=np.int64) for name in ("colour", "kind", "object", "letter")}
    labels["colour"][:] = vocab["background"]
    labels["kind"][:] = vocab["background"]
    labels["object"][:] = vocab["background"]

    for shown in view["objects"]:
        obj = scene["objects"][shown["index"]]
        x0, y0, x1, y1 = shown["box"]
        size = shown["size"]
        whole = abs((x1 - x0) - size) < 2 and abs((y1 - y0) - SIGN_HEIGHT_RATIO * size) < 2
        if obj["kind"] == "sign" and whole:  # the plate only: the post below it shows neither colour nor letter
            labels_of_post = np.ix_(_span(y0 + size + cell / 2, y1), _span(x0, x1))
            for group in labels:
                labels[group][labels_of_post] = -1
            y1 = y0 + size
        block = np.ix_(_span(y0, y1), _span(x0, x1))
        labels["colour"][block] = vocab[obj["colour"]]
        labels["kind"][block] = vocab["sign" if obj["kind"] == "sign" else obj["shape"]] if size >= READABLE_SHAPE else -1
        labels["object"][block] = vocab["object"]
        if obj["kind"] == "sign" and whole and size >= READABLE_LETTER:
            # the letter is drawn in the plate's middle (LETTER_HEIGHT_RATIO of its side): taught on the
            # patches that show it, not on the plate's plain corners
            half = LETTER_HEIGHT_RATIO * size / 2
            cx, cy = (x0 + x1) / 2, y0 + size / 2
            labels["letter"][np.ix_(_span(cy - half, cy + half), _span(cx - half, cx + half))] = vocab[obj["label"]]
    return labels


# ------------------------------------------------------------------- training
STAGE_MIX = {
    "align": {"caption": 0.4, "scene_yesno": 0.35, "yesno": 0.1, "targets": 0.15},
    "instruct": {"caption": 0.05, "crop_mc": 0.3, "scene_mc": 0.1, "union_mc": 0.05, "yesno": 0.2,
                 "scene_yesno": 0.15, "targets": 0.1, "text_mc": 0.1},
}
BACKGROUND_WEIGHT = 0.2  # object patches are few (one per object in a global view): weigh background less
WORD_GROUPS = {"colour": ["background", *COLOURS], "kind": ["background", *KINDS], "object": ["background", "object"],
               "letter": LETTERS}


class Trainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        torch.manual_seed(args.seed)
        self.rng = random.Random(args.seed)
        self.tokenizer = build_tokenizer()
        self.model, self.processor = build_model(self.tokenizer, args)
        if args.init:
            from transformers import LlavaForConditionalGeneration

            saved = LlavaForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
            self.model.load_state_dict(saved.state_dict())
            print(f"init from {args.init}", flush=True)
        self.vocab = self.tokenizer.get_vocab()
        self.pixels, self.scenes = load_bank(args.bank)
        self.samples = Samples(self.scenes, self.rng, args.answer_style)
        mean = torch.tensor(self.processor.image_processor.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.processor.image_processor.image_std).view(1, 3, 1, 1)
        self.norm = (mean, std)
        if args.attention_weight > 0:  # the attention weights are returned by the eager implementation only
            self.model.set_attn_implementation("eager")
        self.device = torch.device(args.device)
        self.model.to(self.device)
        self.group_ids = {g: torch.tensor([self.vocab[w] for w in words], device=self.device)
                          for g, words in WORD_GROUPS.items()}
        self.view_of_pixels = {v["pixels"]: (s, v) for s in self.scenes for v in s["views"]}
        self.image_token = self.vocab["<image>"]

    def encode(self, user: str, answer: str, with_image: bool) -> tuple[list[int], list[int]]:
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": user}]
        prompt = self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                    add_generation_prompt=True, tokenize=False)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if with_image:  # one <image> becomes CELLS^2 tokens, as the processor expands it
            at = prompt_ids.index(self.image_token)
            prompt_ids = prompt_ids[:at] + [self.image_token] * CELLS**2 + prompt_ids[at + 1:]
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids

    def batch(self, stage: str) -> dict[str, Any]:
        mix = self.args.mix.get(stage) or STAGE_MIX[stage]
        kinds = self.rng.choices(list(mix), weights=list(mix.values()), k=self.args.batch)
        drawn = [self.samples.draw(kind) for kind in kinds]
        image_rows = [i for i, (p, *_) in enumerate(drawn) if p is not None]
        encoded = [self.encode(user, answer, p is not None) for p, user, answer, *_ in drawn]
        length = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(encoded), length), pad)
        labels = torch.full((len(encoded), length), -100)
        attention = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, (ids, lab) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(lab)] = torch.tensor(lab)
            attention[row, : len(ids)] = 1
        pixel_index = [drawn[i][0] for i in image_rows]
        images = torch.from_numpy(self.pixels[pixel_index]).permute(0, 3, 1, 2).float() / 255.0 if image_rows else None
        patch = None
        if image_rows:
            images = (images - self.norm[0]) / self.norm[1]
            per_view = [patch_labels(*self.view_of_pixels[p], self.vocab) for p in pixel_index]
            patch = {g: torch.from_numpy(np.stack([v[g] for v in per_view])).view(len(per_view), -1) for g in WORD_GROUPS}
        # the patches of the objects each image sample is about (the phrase's, the answer's)
        object_masks = {row: torch.from_numpy(object_patches(*self.view_of_pixels[p], about))
                        for row, (p, _, _, _, about) in enumerate(drawn) if p is not None and about}
        value_targets = []  # (batch row, token position, flat mask of the patches its value should match)
        for row, (p, _, _, words, _) in enumerate(drawn):
            if p is None or not words:
                continue
            ids = encoded[row][0]
            after = len(ids) - 1 - ids[::-1].index(self.image_token)
            for word, group in words:
                word_id = self.vocab[word]
                if word_id not in ids[after:]:
                    continue
                if group != "colour" and self.args.value_phrase:
                    # the phrase's noun ("sign" in "blue sign") comes after its colour word, so its value can carry
                    # both: pulled onto the objects the whole phrase names (a No names none: no target), readable
                    # or not (on a whole scene a 6-px circle is still a red object where a circle could be)
                    if row not in object_masks:
                        continue
                    positive = object_masks[row]
                else:
                    positive = patch[group][image_rows.index(row)] == word_id
                if positive.any():
                    value_targets.append((row, after + ids[after:].index(word_id), positive))
        attend = []  # (batch row, answer-predicting position, first image token, patch mask)
        for row, mask in object_masks.items():
            if mask.any():
                prompt_length = encoded[row][1].count(-100)
                attend.append((row, prompt_length - 1, encoded[row][0].index(self.image_token), mask))
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention, "image_rows": image_rows,
                "pixel_values": images, "patch_labels": patch, "value_targets": value_targets, "kinds": kinds,
                "attend": attend}

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(self.device)
            return {k: move(v) for k, v in value.items()} if isinstance(value, dict) else value

        return {key: move(value) for key, value in batch.items()}

    def vision_batch(self) -> dict[str, Any]:
        pixel_index = self.rng.sample(range(len(self.view_of_pixels)), self.args.vision_batch)
        images = torch.from_numpy(self.pixels[pixel_index]).permute(0, 3, 1, 2).float() / 255.0
        per_view = [patch_labels(*self.view_of_pixels[p], self.vocab) for p in pixel_index]
        patch = {g: torch.from_numpy(np.stack([v[g] for v in per_view])).view(len(per_view), -1) for g in WORD_GROUPS}
        return {"pixel_values": (images - self.norm[0]) / self.norm[1], "patch_labels": patch}

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.model.model.get_image_features(pixel_values=pixel_values)
        features = features.pooler_output if hasattr(features, "pooler_output") else features
        features = torch.stack(list(features)) if isinstance(features, (list, tuple)) else features
        return features.view(len(pixel_values), CELLS**2, -1)

    def feature_norm_loss(self, features: torch.Tensor) -> torch.Tensor:
        # keep image features at the text embeddings' scale: a shared component hundreds of times
        # larger than a word embedding survives the cosine losses (it is common to every patch) but
        # leaves the patches nearly identical after the language model's RMSNorm
        word_norm = self.model.get_input_embeddings().weight.norm(dim=-1).mean().detach()
        return (features.norm(dim=-1) / word_norm).log().pow(2).mean()

    def vision_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        features = self.image_features(batch["pixel_values"])
        out = {"align": self.alignment_loss(features, batch["patch_labels"]), **self.metrics}
        if self.args.feature_norm_weight > 0:
            out["feature_norm"] = self.feature_norm_loss(features)
        return out

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        model = self.model
        embed = model.get_input_embeddings()
        inputs = embed(batch["input_ids"])
        out: dict[str, torch.Tensor] = {}
        if batch["pixel_values"] is not None:
            features = self.image_features(batch["pixel_values"])
            rows = torch.tensor(batch["image_rows"], device=self.device)
            image_mask = batch["input_ids"][rows] == self.image_token
            merged = inputs[rows].clone()
            merged[image_mask] = features.reshape(-1, features.shape[-1]).to(merged.dtype)
            inputs = inputs.index_copy(0, rows, merged)
            out["align"] = self.alignment_loss(features, batch["patch_labels"])
            out.update(self.metrics)
            if self.args.feature_norm_weight > 0:
                out["feature_norm"] = self.feature_norm_loss(features)
        supervise_attention = bool(batch["attend"]) and self.args.attention_weight > 0
        lm_out = model.model.language_model(inputs_embeds=inputs, attention_mask=batch["attention_mask"],
                                            use_cache=bool(batch["value_targets"]),
                                            output_attentions=supervise_attention)
        hidden = lm_out.last_hidden_state
        if batch["value_targets"] and self.args.value_weight > 0:
            out["values"] = self.value_alignment_loss(lm_out.past_key_values, batch)
        if supervise_attention:
            out["attention"] = self.attention_loss(lm_out.attentions, batch["attend"])
        logits = model.lm_head(hidden[:, :-1])
        labels = batch["labels"][:, 1:]
        per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                    reduction="none").view(labels.shape)
        # mean per sample first: a one-letter answer weighs as much as a long target-extraction answer
        per_sample = per_token.sum(1) / (labels != -100).sum(1).clamp(min=1)
        out["lm"] = per_sample.mean()
        for kind in set(batch["kinds"]):  # logged per task, not trained separately
            rows = [i for i, k in enumerate(batch["kinds"]) if k == kind]
            out[f"lm_{kind}"] = per_sample[rows].mean().detach()
        return out

    def value_alignment_loss(self, cache: Any, batch: dict[str, Any]) -> torch.Tensor:
        """For the existence question's colour and kind words: the per-head
        cosine of their value vectors with every image token's (what FOCUS
        reads from the cache), softmax over the image tokens, pulled onto the
        patches that show the word; every layer."""
        losses = []
        image_mask = batch["input_ids"] == self.image_token
        for layer in cache.layers:
            values = F.normalize(layer.values, dim=-1)  # [B, heads, S, head_dim]
            for row, position, positive in batch["value_targets"]:
                image_values = values[row][:, image_mask[row]]  # [heads, P, head_dim]
                similarity = (image_values * values[row][:, position, None]).sum(-1).mean(0)
                logits = similarity / self.args.align_temperature
                losses.append(torch.logsumexp(logits, 0) - torch.logsumexp(logits[positive.to(logits.device)], 0))
        return torch.stack(losses).mean() if losses else torch.zeros(())

    def attention_loss(self, attentions: tuple[torch.Tensor, ...], attend: list[Any]) -> torch.Tensor:
        """At the position that predicts the answer, the attention mass (mean
        over heads) that chosen layers put on the patches of the objects the
        answer is about, as -log; teaches the content lookup (find the patches
        that the question's words name) that a random language model learns
        only slowly from the answers alone."""
        losses = []
        for layer in self.args.attention_layers:
            weights = attentions[layer]  # [B, heads, S, S]
            for row, position, first_image, mask in attend:
                on_image = weights[row, :, position, first_image:first_image + CELLS**2]  # [heads, P]
                mass = on_image[:, mask.to(on_image.device)].sum(-1).mean()
                losses.append(-torch.log(mass + 1e-6))
        return torch.stack(losses).mean()

    def alignment_loss(self, features: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        table = F.normalize(self.model.get_input_embeddings().weight, dim=-1)
        feats = F.normalize(features, dim=-1)
        total = features.new_zeros(())
        self.metrics = {}
        for group, ids in self.group_ids.items():
            logits = feats @ table[ids].T / self.args.align_temperature  # [B, P, words]
            target = labels[group]
            position = torch.full_like(target, -100)
            for k, word in enumerate(ids.tolist()):
                position[target == word] = k
            per_patch = F.cross_entropy(logits.reshape(-1, len(ids)), position.reshape(-1).clamp(min=0),
                                        reduction="none")
            taught = position.reshape(-1) >= 0
            weight = torch.where(target.reshape(-1) == self.vocab["background"], BACKGROUND_WEIGHT, 1.0) * taught
            if taught.any():
                total = total + (per_patch * weight).sum() / weight.sum()
            on_object = taught & (target.reshape(-1) != self.vocab["background"])
            if on_object.any():  # logged: how often the patch's nearest word in the group is right, on objects
                hits = logits.reshape(-1, len(ids)).argmax(-1) == position.reshape(-1)
                self.metrics[f"acc_{group}"] = hits[on_object].float().mean().detach()
        return total

    def train(self) -> None:
        args = self.args
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
        total = args.vision_steps + args.align_steps + args.instruct_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / 100) * (
            0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))))
        self.model.train()
        started = time.time()
        log = open(Path(args.out) / "train_log.jsonl", "a")
        for step in range(total):
            stage = ("vision" if step < args.vision_steps else
                     "align" if step < args.vision_steps + args.align_steps else "instruct")
            batch = self.vision_batch() if stage == "vision" else self.batch(stage)
            batch = self.to_device(batch)
            parts = self.vision_losses(batch) if stage == "vision" else self.losses(batch)
            loss = (parts.get("lm", 0.0) + args.align_weight * parts.get("align", 0.0) + args.value_weight * parts.get("values", 0.0)
                    + args.feature_norm_weight * parts.get("feature_norm", 0.0)
                    + args.attention_weight * parts.get("attention", 0.0))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            schedule.step()
            if step % 25 == 0 or step == total - 1:
                record = {"step": step, "stage": stage, "seconds": round(time.time() - started, 1),
                          **{k: round(float(v.detach()), 4) for k, v in parts.items()}}
                print(json.dumps(record), flush=True)
                log.write(json.dumps(record) + "\n")
                log.flush()
            if (step + 1) % args.save_every == 0 or step == total - 1:
                self.save(Path(args.out) / "model")
        log.close()

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # fp16 on disk (the 20 MB budget); the training copy stays fp32
        half = {k: v.detach().to("cpu", torch.float16) for k, v in self.model.state_dict().items()}
        self.model.config.dtype = "float16"
        self.model.save_pretrained(folder, state_dict=half)
        self.processor.save_pretrained(folder)
        portable_tokenizer_config(folder)  # loadable by every supported transformers (4.56 and later)
        portable_llava_weights(folder)
        (folder / "focus_demo.json").write_text(json.dumps({
            "version": "trained-llava-v1", "seed": self.args.seed, "trained_by": "tools/train_demo_model.py",
            "args": vars(self.args),
        }, indent=1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train the embedded demo model on the synthetic world.")
    parser.add_argument("--bank", required=True, help="views from tools/demo_model_data.py")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vision-steps", type=int, default=1000)
    parser.add_argument("--vision-batch", type=int, default=48)
    parser.add_argument("--align-steps", type=int, default=300)
    parser.add_argument("--instruct-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--align-weight", type=float, default=1.0)
    parser.add_argument("--align-temperature", type=float, default=0.1)
    parser.add_argument("--value-weight", type=float, default=1.0)
    parser.add_argument("--value-phrase", action="store_true",
                        help="the noun's value target is the named object (colour and kind), not every patch of its kind")
    parser.add_argument("--feature-norm-weight", type=float, default=0.1)
    parser.add_argument("--attention-weight", type=float, default=0.5,
                        help="weight of the attention-supervision loss (answer position -> the asked object's patches)")
    parser.add_argument("--attention-layers", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2],
                        help="language-model layers (0-based, comma-separated) whose attention is supervised")
    parser.add_argument("--answer-style", default="letter", choices=["letter", "text"],
                        help="multiple-choice answers: the option's letter, or its text")
    parser.add_argument("--init", default=None, help="start from the weights of a saved checkpoint folder")
    parser.add_argument("--mix", type=json.loads, default={},
                        help='override a stage\'s sample mix, e.g. \'{"instruct": {"caption": 0.5, "crop_mc": 0.5}}\'')
    parser.add_argument("--vision-hidden", type=int, default=128)
    parser.add_argument("--vision-layers", type=int, default=4)
    parser.add_argument("--text-hidden", type=int, default=192)
    parser.add_argument("--text-layers", type=int, default=4)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (to train on a lent GPU; untested there so far)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.attention_weight > 0 and not all(0 <= layer < args.text_layers for layer in args.attention_layers):
        parser.error(f"--attention-layers {args.attention_layers} must lie in 0..{args.text_layers - 1} "
                     f"(the language model has --text-layers {args.text_layers})")
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Trainer(args).train()


if __name__ == "__main__":
    main()
