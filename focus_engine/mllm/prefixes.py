"""Each image prefilled once: a prompt's image prefix computed once and continued.

Every FOCUS stage shows the model a prompt that starts with the same thing:
the chat template's head and an image's tokens. The relevance prompts of a
question's targets all start with the whole image; the answer on a verified
crop starts with the crop its verification has just prefilled. Here that
shared start, the **image prefix** (the prompt up to and including the last
image token), is prefilled once (the vision encoder runs once) and every
prompt that starts with it goes on from a copy of its KV cache.

Exact by construction where it matters:

- the prompt is tokenized whole, as before, and cut after the last image
  token, so prefix and continuation are the very tokens of the whole prompt;
  a prompt whose text cannot be cut so (its continuation would tokenize
  otherwise) takes the whole-prompt path;
- the continuation's rows are right-padded after their real tokens, so no
  real token attends to a pad (causal attention), and its positions go on
  from the prefix's (the family says how: ``continuation_kwargs``, Qwen's
  M-RoPE offsets);
- a cache is copied before it is continued (``copy_cache``), so a prefix is
  never changed by a prompt that goes on from it; hybrid models' recurrent
  state (Qwen3.5's linear attention) is copied with it.

What stays within float tolerance: a continued row's numbers come from two
calls instead of one, so sums run in another order (relevance maps equal to
float tolerance, the same argmax; tests/test_prefix_reuse.py).

``PrefixStore`` holds the prefixes one question may use again (an open
``MLLM.question_scope``): the whole image (prefilled by the gate's answer
prompt or by several relevance prompts, for the question's later prompts
about it), and, where the answer will look at one verified crop, per yes/no
question the crop that answered it most surely. It is emptied when the
question ends, so a prefix lives for one question only.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from PIL import Image

PER_TOKEN_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
"""Processor outputs with one entry per prompt token (cut with the prompt)."""


@dataclass
class ImagePrefix:
    """A prompt up to and including its last image token, prefilled.

    ``cache`` may hold several rows (crops of one verification step prefilled
    together, same length); a continuation takes one row each, or, with one
    row, repeats it for every continued prompt."""

    key: str
    """What the prefix shows (``prefix_key``): the chat head and the images' pixels."""
    cache: Any
    ids: torch.Tensor
    """``[rows, length]`` token ids, on the CPU."""
    inputs: dict[str, Any]
    """The processor's tensors for the prefix: per-token ones cut to its
    length, the images' sizes and grids; no pixels (they are in the cache)."""
    state: Any = None
    """What the family needs to go on from it (Qwen: the M-RoPE deltas)."""
    layer_values: dict[int, torch.Tensor] | None = None
    """Per-token values captured for recurrent layers, ``[rows, heads, length, dim]``."""
    pre_rope_keys: dict[int, torch.Tensor] | None = None
    keys_range: tuple[int, int] | None = None
    """The layer range ``pre_rope_keys`` were captured over (None: none were)."""
    images_per_row: list[int] | None = None
    """How many images each row shows (None: one each); the processor's
    per-image tensors (Qwen's ``image_grid_thw``, OneVision's
    ``image_sizes``) hold the rows' images in order."""
    continuable: bool = True
    """Prompts may go on from it in a batch (it has its family ``state``);
    False: it was cut from a whole prompt's prefill and serves decoding on
    (``MLLM.reply``) only."""

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    def serves(self, capture_keys: tuple[int, int] | None, continued: bool) -> bool:
        """It holds what a continuation needs: batched (``continued``),
        capturing pre-RoPE keys over ``capture_keys``."""
        if continued and not self.continuable:
            return False
        return capture_keys is None or (self.keys_range is not None and self.keys_range[0] <= capture_keys[0]
                                        and capture_keys[1] <= self.keys_range[1])

    def row(self, index: int) -> "ImagePrefix":
        """Row ``index`` alone, in a cache of its own (the store keeps one row
        of a step's crops, not the step)."""
        if self.rows == 1:
            return self
        pick = [index]
        return ImagePrefix(
            key=self.key, cache=copy_cache(self.cache, pick), ids=self.ids[index : index + 1].clone(),
            inputs=row_inputs(self.inputs, index, self.images_per_row or [1] * self.rows),
            state=None if self.state is None else self.state[index : index + 1].clone(),
            layer_values=_rows(self.layer_values, pick), pre_rope_keys=_rows(self.pre_rope_keys, pick),
            keys_range=self.keys_range, continuable=self.continuable,
        )


def row_inputs(inputs: dict[str, Any], row: int, images_per_row: Sequence[int]) -> dict[str, Any]:
    """Row ``row``'s part of batched processor tensors (pixels left out):
    per-token ones by row, per-image ones (first dimension: every row's
    images) by its images."""
    first = sum(images_per_row[:row])
    picked = {}
    for name, value in inputs.items():
        if not isinstance(value, torch.Tensor) or name.startswith("pixel_values"):
            continue
        if name in PER_TOKEN_INPUTS:
            value = value[row : row + 1]
        elif value.dim() > 0 and value.shape[0] == sum(images_per_row):
            value = value[first : first + images_per_row[row]]
        picked[name] = value.clone()
    return picked


def _rows(tensors: dict[int, torch.Tensor] | None, pick: list[int]) -> dict[int, torch.Tensor] | None:
    if tensors is None:
        return None
    return {layer: value[pick].clone() for layer, value in tensors.items()}


def copy_cache(cache: Any, rows: Sequence[int] | None = None) -> Any:
    """A copy of ``cache`` that the caller may extend, with its batch rows
    ``rows`` in that order (None: all, as they are). ``reorder_cache`` picks
    rows in every kind of cache layer, a recurrent state's included."""
    copied = copy.deepcopy(cache)
    if rows is not None:
        copied.reorder_cache(torch.tensor(list(rows), dtype=torch.long))
    return copied


def image_head(chat: str, image_token: str) -> str | None:
    """``chat`` up to and including its last image placeholder (None: no image)."""
    at = chat.rfind(image_token)
    return chat[: at + len(image_token)] if at >= 0 else None


def prefix_key(head: str, images: Sequence[Image.Image]) -> str:
    """What a prefix shows: its chat text up to the last image and the
    images' pixels (a digest: two crops of the same box are the same prefix,
    two different images never are)."""
    digest = hashlib.blake2b(head.encode("utf-8"), digest_size=16)
    for image in images:
        digest.update(f"|{image.mode}|{image.size}|".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


@dataclass
class _Kept:
    key: str
    prefix: ImagePrefix
    score: float


@dataclass
class PrefixStore:
    """The prefixes one question may use again, one per slot: a slot keeps
    the prefix offered with the highest score (a yes/no question keeps its
    surest crop), so what is held is bounded by the slots, not the calls."""

    slots: dict[str, _Kept] = field(default_factory=dict)

    def offer(self, slot: str, key: str, prefix: ImagePrefix | Any, score: float = float("inf")) -> bool:
        """Keep ``prefix`` in ``slot`` if its score beats the one kept there
        (``prefix`` may be a function making it: called only when kept)."""
        kept = self.slots.get(slot)
        if kept is not None and kept.score >= score:
            return False
        self.slots[slot] = _Kept(key, prefix() if callable(prefix) else prefix, score)
        return True

    def take(self, key: str, capture_keys: tuple[int, int] | None = None, *,
             continued: bool = True) -> ImagePrefix | None:
        """The prefix showing ``key`` that serves the use (see
        ``ImagePrefix.serves``), removed from the store (it is to be
        continued in place, its last use), or None."""
        for slot, kept in list(self.slots.items()):
            if kept.key == key and kept.prefix.serves(capture_keys, continued):
                del self.slots[slot]
                return kept.prefix
        return None

    def clear(self) -> None:
        self.slots.clear()

    def __len__(self) -> int:
        return len(self.slots)


__all__ = ["ImagePrefix", "PER_TOKEN_INPUTS", "PrefixStore", "copy_cache", "image_head", "prefix_key", "row_inputs"]
