"""Helpers shared by the tests (importable: pyproject puts tests/ on the path)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from focus_engine.testing import synthetic_scene


def scene(
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    colour: str = "red",
    distractors: int = 12,
    seed: int = 0,
) -> Image.Image:
    """A grey scene with one ``colour`` square at ``box`` and distractors."""
    return synthetic_scene(size, box, colour=colour, distractors=distractors, seed=seed)


SIZES = {"wide": (2400, 900), "tall": (900, 2400), "square": (1500, 1500)}
"""Image shapes every family's localisation is tested on."""
PLACES = ("left", "right", "top", "bottom", "top-left", "bottom-right")
"""Where the object sits: touching these edges (centred on the other axis)."""


def object_box(size: tuple[int, int], place: str, side: int) -> tuple[int, int, int, int]:
    """A ``side``-pixel square touching the named edge(s) of an image of ``size``."""
    width, height = size
    x, y = (width - side) // 2, (height - side) // 2
    x = 0 if "left" in place else (width - side if "right" in place else x)
    y = 0 if "top" in place else (height - side if "bottom" in place else y)
    return x, y, x + side, y + side


def peak_pixel(rmap) -> tuple[int, int]:
    """(x, y) of the maximum of the map at image resolution."""
    full = rmap.to_image()
    y, x = np.unravel_index(int(np.argmax(full)), full.shape)
    return int(x), int(y)


def covers_centre(box, target) -> bool:
    """Whether ``box`` contains the centre of ``target``."""
    cx, cy = (target[0] + target[2]) / 2, (target[1] + target[3]) / 2
    return box[0] <= cx < box[2] and box[1] <= cy < box[3]


BOXES = [(1000, 100, 1100, 200), (50, 500, 150, 600), (600, 300, 700, 400)]
"""Where the red square of each image of ``image_batch`` is."""


def image_batch(n: int):
    """A ComfyUI IMAGE batch ``[n, 700, 1200, 3]`` of scenes with a red square at BOXES[i]."""
    import torch

    arrays = [np.asarray(scene((1200, 700), BOXES[i], seed=i), np.float32) / 255.0 for i in range(n)]
    return torch.from_numpy(np.stack(arrays))


def real_size_qwen(config_cls, model_cls, adapter_cls, tokenizer, vision: dict, text: dict, **settings):
    """An adapter of a Qwen3-generation family (``adapter_cls``) with a
    released-size ``vision`` / ``text`` configuration and the released
    preprocessor's budget (16-px patches, 2x2 merge, 65,536 .. 16,777,216 px)
    on a weightless (meta) model: enough for the processor and the visual
    layout, never run. ``tokenizer`` must know the Qwen vision tokens."""
    import torch
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from focus_engine import load_mllm

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                            "<|vision_end|>")}
    config = config_cls(
        vision_config=dict(patch_size=16, spatial_merge_size=2, **vision),
        text_config=dict(vocab_size=len(tokenizer), **text),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.device("meta"):
        model = model_cls(config)
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": 65536, "longest_edge": 16777216},
    )
    processor = adapter_cls.image_only_processor()(image_processor=image_processor, tokenizer=tokenizer)
    return load_mllm((model, processor), settings=settings or None)


@contextlib.contextmanager
def comfyui_server(comfyui: str, base: Path, extra_args: tuple[str, ...] = ()
                   ) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """A real ComfyUI (the checkout ``comfyui``, run by ``COMFYUI_PYTHON``)
    serving the base directory ``base`` on a free port (``extra_args``, e.g.
    ``--front-end-root DIR``, go to its command line): yields (url, process,
    log) once the pack's nodes are listed (300 s at most), stops the server
    afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log, url = base / "server.log", f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
             "--port", str(port), "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
             *extra_args],
            cwd=comfyui, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            assert process.poll() is None, "ComfyUI exited:\n" + log.read_text()[-3000:]
            try:
                urllib.request.urlopen(url + "/object_info/FocusVQA", timeout=10).close()
                break
            except OSError:
                assert time.time() < deadline, "ComfyUI did not start in 300 s:\n" + log.read_text()[-3000:]
                time.sleep(1)
        yield url, process, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def set_hub_offline(monkeypatch: Any, offline: bool) -> None:
    """HF_HUB_OFFLINE as huggingface_hub holds it: it reads the variable once,
    at import, and the engine asks it (``hf_loading.hub_offline``)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
