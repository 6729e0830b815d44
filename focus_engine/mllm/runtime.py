"""The Hugging Face runtime under ``MLLM``: what a family author need not read.

``HFRuntime`` is a mixin of ``MLLM`` (``base.py``, the family contract and
the public methods). It holds the plumbing those public methods share: the
tokenizer's set-up, processor output made ready for the model, the batched
prefill and where its rows' targets are, the yes/no logits of a batch,
greedy decoding with its token probabilities, an option's reply loss, and
the decoder layers (for pre-RoPE key hooks). It calls the family only
through the contract (``view``, ``visual_grid_positions``, ``build_prompt``,
``processor_inputs``, ``before_forward``) and the facts ``MLLM`` states
(``device``, ``dtype``, ``text_config``, ``num_layers``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..cost import CallCounter
from ..errors import FocusInputError, FocusModelError, check_finite
from ..inputs import context_overflow
from ..kv import CACHE_KWARG, Prefill, PromptRow, check_full_cache, output_cache

if TYPE_CHECKING:
    from .view import VisualView


@dataclass
class Decoded:
    """A greedy answer and the probability the model gave each of its tokens."""

    text: str
    token_probabilities: list[float]
    cut_off: bool = False
    """The reply reached ``max_new_tokens`` before it ended (no end-of-sequence
    token, no stop string): its last words may be unfinished."""


class HFRuntime:
    """Hugging Face plumbing shared by every family (a mixin of ``MLLM``)."""

    model: Any
    processor: Any
    tokenizer: Any
    counter: CallCounter
    image_token: str
    image_token_id: int

    if TYPE_CHECKING:  # stated by MLLM (base.py): the contract and its facts
        device: torch.device
        dtype: torch.dtype
        text_config: Any
        num_layers: int
        context_length: int | None

        def view(self, image: Image.Image) -> VisualView: ...
        def visual_grid_positions(self, input_ids: torch.Tensor, view: VisualView) -> np.ndarray: ...
        recurrent_layers: frozenset[int]

        def build_prompt(self, n_images: int, text: str) -> str: ...
        def hook_layer_values(self, store: dict[int, torch.Tensor]) -> list[Any]: ...
        def processor_inputs(self, views: Sequence[VisualView], texts: Sequence[str], **kwargs: Any) -> Any: ...
        def before_forward(self, inputs: Mapping[str, Any]) -> None: ...

    # ------------------------------------------------------------ tokenizer
    def _prepare_tokenizer(self) -> None:
        """The processor's tokenizer, left-padding, with a pad token, and the image token."""
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is None:
            raise FocusModelError(
                f"the processor {type(self.processor).__name__} has no tokenizer; load the model's full "
                "processor (AutoProcessor.from_pretrained on the model folder)"
            )
        # left padding so that the last position of every row of a batch is its real last token
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.image_token = getattr(self.processor, "image_token", None) or "<image>"
        self.image_token_id = self._image_token_id()

    def _image_token_id(self) -> int:
        token_id = getattr(self.processor, "image_token_id", None)
        if token_id is None:
            token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise FocusModelError(
                f"the tokenizer does not know the image token {self.image_token!r}; "
                "this folder's processor does not match a multimodal model"
            )
        return int(token_id)

    @functools.cached_property
    def yes_no_token_ids(self) -> tuple[list[int], list[int]]:
        """Token ids that start a "Yes" / "No" answer (looked up on first use,
        so a model whose vocabulary lacks them still maps relevance).

        An id that starts both (a Llama tokenizer read from a legacy
        tokenizer.json encodes " Yes" and " No" as "▁" + the word) is dropped
        from both: counted for both it would pull every confidence to 0.5."""
        yes, no = self._answer_token_ids("Yes"), self._answer_token_ids("No")
        shared = set(yes) & set(no)
        yes, no = [i for i in yes if i not in shared], [i for i in no if i not in shared]
        if not yes or not no:
            raise FocusModelError(
                "this tokenizer starts 'Yes' and 'No' with the same token, so a yes/no confidence cannot be read "
                f"from it (shared token ids {sorted(shared)}); FOCUS's verification needs a tokenizer that tells them "
                "apart in their first token"
            )
        return yes, no

    def _answer_token_ids(self, word: str) -> list[int]:
        """First token of ``word`` in the forms a model starts an answer with."""
        ids = []
        for form in (word, " " + word):
            encoded = self.tokenizer.encode(form, add_special_tokens=False)
            if encoded and encoded[0] != self.tokenizer.unk_token_id and encoded[0] not in ids:
                ids.append(int(encoded[0]))
        if not ids:
            raise FocusModelError(f"the tokenizer cannot encode {word!r}; yes/no verification needs it")
        return ids

    @staticmethod
    def _user_turn(n_images: int, text: str) -> list[dict[str, Any]]:
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
        return [{"role": "user", "content": content}]

    # --------------------------------------------------------- model inputs
    def _model_inputs(self, inputs: Any) -> dict[str, Any]:
        """The processor's output ready for the model: the family's
        ``before_forward`` hook, then tensors on the model's device and
        floating ones in its dtype."""
        self.before_forward(inputs)
        moved = {}
        for key, value in dict(inputs).items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            moved[key] = value
        return moved

    def check_context(self, inputs: Any, reserve: int = 0) -> None:
        """Refuse model inputs longer than the model's context (with
        ``reserve`` tokens to generate) before the call: the exact count,
        the image's tokens included, of what would be run."""
        limit, tokens = self.context_length, int(inputs["input_ids"].shape[-1])
        if limit and tokens + reserve > limit:
            raise FocusInputError(context_overflow("the prompt (the image's and the chat template's tokens "
                                                   "included)", tokens, reserve, limit))

    # --------------------------------------------------------------- prefill
    def _prefill(
        self, image: Image.Image, texts: Sequence[str], capture_keys: tuple[int, int] | None
    ) -> tuple[list[PromptRow], Any, torch.Tensor]:
        """One forward call over ``image`` with each user text; per text, what
        locating its targets needs later."""
        view = self.view(image)
        chats = [self.build_prompt(1, text) for text in texts]
        try:
            inputs = self.processor_inputs([view] * len(chats), chats, padding=True, return_offsets_mapping=True)
            offsets = inputs.pop("offset_mapping").tolist()
        except (NotImplementedError, TypeError, ValueError, KeyError):
            inputs, offsets = self.processor_inputs([view] * len(chats), chats, padding=True), None
        self.check_context(inputs)
        input_ids = inputs["input_ids"].cpu()
        mask = inputs.get("attention_mask")
        pads = (mask.cpu() == 0).sum(dim=1).tolist() if mask is not None else [0] * len(chats)
        captured: dict[int, torch.Tensor] = {}
        layer_values: dict[int, torch.Tensor] = {}
        handles = self._hook_pre_rope_keys(capture_keys, captured) if capture_keys else []
        handles += self.hook_layer_values(layer_values)
        try:
            with torch.inference_mode():
                out = self.model(**self._model_inputs(inputs), use_cache=True, logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()
        self.counter.forward_passes += len(chats)
        cache = output_cache(out)
        check_full_cache(cache, int(input_ids.shape[1]), self.num_layers, skip=self.recurrent_layers)
        rows = []
        for index, (text, chat, pad) in enumerate(zip(texts, chats, pads)):
            at = chat.rfind(text)
            if at < 0:
                raise FocusModelError("the chat template dropped the question text; cannot locate the target tokens")
            ids = input_ids[index, pad:]
            rows.append(PromptRow(
                cache=cache, index=index, pad=pad, ids=ids, chat=chat, user_text=text, user_text_at=at,
                offsets=offsets[index][pad:] if offsets is not None else None, geometry=view.geometry,
                visual_positions=self.visual_grid_positions(ids, view), pre_rope_keys=captured or None,
                layer_values=layer_values or None, unmapped_layers=self.recurrent_layers - set(layer_values),
            ))
        return rows, inputs, out.logits[:, -1, :].float().cpu()

    def _row_prefills(self, row: PromptRow, spans: Mapping[str, tuple[int, int]]) -> dict[str, Prefill]:
        prefills = {}
        for target, (lo, hi) in spans.items():
            span = (row.user_text_at + lo, row.user_text_at + hi)
            positions = self._target_positions(row.ids, row.chat, span, row.offsets, target)
            prefills[target] = Prefill(
                cache=row.cache, input_ids=row.ids, visual_positions=row.visual_positions, geometry=row.geometry,
                target_positions=positions,
                target_tokens=self.tokenizer.convert_ids_to_tokens([int(row.ids[p]) for p in positions]),
                pre_rope_keys=row.pre_rope_keys, layer_values=row.layer_values,
                unmapped_layers=row.unmapped_layers, row=row.index, start=row.pad,
            )
        return prefills

    def _target_positions(
        self,
        input_ids: torch.Tensor,
        text: str,
        span: tuple[int, int],
        offsets: list[list[int]] | None,
        target: str,
    ) -> list[int]:
        ids = input_ids.tolist()
        if offsets is not None:
            # the processor repeats the image placeholder; everything after the
            # images moves right by the added characters
            n_image_tokens = sum(1 for t in ids if t == self.image_token_id)
            shift = (n_image_tokens - text.count(self.image_token)) * len(self.image_token)
            lo, hi = span[0] + shift, span[1] + shift
            positions = [
                i for i, (a, b) in enumerate(offsets)
                if b > a and a < hi and b > lo and ids[i] != self.image_token_id
            ]
        else:
            positions = _find_subsequence(ids, self.tokenizer, target)
        decoded = self.tokenizer.decode([ids[p] for p in positions]) if positions else ""
        if not positions or _squash(target) not in _squash(decoded):
            raise FocusInputError(
                f"could not find the tokens of target {target!r} in the prompt (found {decoded!r}); "
                "use a plain object phrase such as 'red car'"
            )
        return positions

    # ------------------------------------------------------------ yes / no
    def _yes_probability_batch(self, chunk: Sequence[tuple[Sequence[Image.Image], str]]) -> np.ndarray:
        """``softmax(l_Yes, l_No)[Yes]`` of each question of ``chunk``, in one forward call."""
        views = [self.view(image) for images, _ in chunk for image in images]
        texts = [self.build_prompt(len(images), text) for images, text in chunk]
        inputs = self.processor_inputs(views, texts, padding=True)
        self.check_context(inputs)
        with torch.inference_mode():
            logits = self.model(**self._model_inputs(inputs), use_cache=False, logits_to_keep=1).logits
        self.counter.forward_passes += len(chunk)
        last = logits[:, -1, :].float()
        yes = torch.logsumexp(last[:, self.yes_no_token_ids[0]], dim=-1)
        no = torch.logsumexp(last[:, self.yes_no_token_ids[1]], dim=-1)
        confidence = torch.sigmoid(yes - no)
        check_finite(confidence, "yes/no confidence")
        return confidence.cpu().numpy()

    # ------------------------------------------------------------- decoding
    def _decode(
        self, inputs: Any, cache: Any, max_new_tokens: int, should_stop: Callable[[], bool] | None,
        stop_strings: Sequence[str] = (), lookup_tokens: int = 0,
    ) -> Decoded:
        """Greedy decoding of ``inputs`` (from ``cache`` when given), with the
        probability of each new token; it ends early at any of ``stop_strings``.
        ``lookup_tokens`` > 0: transformers' prompt-lookup decoding, which
        proposes up to that many tokens copied from the prompt and checks them
        in one call (the greedy answer, in fewer calls, where the reply copies
        the prompt)."""
        self.check_context(inputs, max_new_tokens)
        kwargs: dict[str, Any] = {} if cache is None else {CACHE_KWARG: cache}
        if lookup_tokens > 0 and not self.recurrent_layers:  # a recurrent state cannot take back rejected tokens
            kwargs["prompt_lookup_num_tokens"] = lookup_tokens
        if should_stop is not None or stop_strings:
            kwargs["stopping_criteria"] = _stopping_criteria(should_stop, stop_strings, self.tokenizer,
                                                             int(inputs["input_ids"].shape[1]))
        inputs = self._model_inputs(inputs)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                output_scores=True,
                return_dict_in_generate=True,
                **kwargs,
            )
        self.counter.generate_calls += 1
        if should_stop is not None and should_stop():
            raise InterruptedError("FOCUS generation interrupted")
        new_tokens, ended = self._within_limits(out.sequences[0, inputs["input_ids"].shape[1] :], max_new_tokens)
        probabilities = [
            float(torch.softmax(step[0].float(), dim=-1)[token]) for step, token in zip(out.scores, new_tokens.tolist())
        ]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        cut_off = not ended and len(new_tokens) >= max_new_tokens and not any(s in text for s in stop_strings)
        return Decoded(text=text, token_probabilities=probabilities, cut_off=cut_off)

    def _within_limits(self, new_tokens: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, bool]:
        """The greedy reply as one-token-a-call decoding ends it: at most
        ``max_new_tokens``, and nothing after the first end-of-sequence token
        (transformers 4.56's prompt-lookup decoding can accept a checked run
        of tokens past either; the tokens before are the same); and whether
        it ended with that token."""
        new_tokens = new_tokens[:max_new_tokens]
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = {self.tokenizer.eos_token_id} | set(eos if isinstance(eos, (list, tuple)) else [eos])
        ends = [i for i, token in enumerate(new_tokens.tolist()) if token in eos]
        return (new_tokens[: ends[0] + 1], True) if ends else (new_tokens, False)

    def _reply_loss(self, views: Sequence[VisualView], prompt_ids: torch.Tensor, whole: str, reply: str) -> float:
        """The mean cross-entropy of the tokens ``whole`` (the prompt, then
        ``reply`` as the assistant's turn) adds to ``prompt_ids``; one forward pass."""
        inputs = self.processor_inputs(views, [whole])
        ids = inputs["input_ids"][0]
        shared = 0  # the prompt's tokens come first; the reply's are the rest (robust to a merge at the seam)
        while shared < min(len(ids), len(prompt_ids)) and ids[shared] == prompt_ids[shared]:
            shared += 1
        if shared >= len(ids):
            raise FocusModelError(f"option {reply!r} adds no tokens to the prompt; it cannot be scored")
        self.check_context(inputs)
        with torch.inference_mode():
            logits = self.model(**self._model_inputs(inputs)).logits[0]
        self.counter.generate_calls += 1
        target = ids[shared:].to(logits.device)
        return float(torch.nn.functional.cross_entropy(logits[shared - 1:-1].float(), target))

    # ------------------------------------------------------- decoder layers
    def _decoder_layers(self) -> Sequence[torch.nn.Module]:
        language_model = getattr(getattr(self.model, "model", None), "language_model", None)
        for candidate in (language_model, getattr(language_model, "model", None)):
            layers = getattr(candidate, "layers", None)
            if layers is not None:
                return layers
        decoder = self.model.get_decoder() if hasattr(self.model, "get_decoder") else None
        if decoder is not None and hasattr(decoder, "layers"):
            return decoder.layers
        raise FocusModelError(f"cannot find the decoder layers of {type(self.model).__name__}")

    def _hook_pre_rope_keys(self, layer_range: tuple[int, int], store: dict[int, torch.Tensor]) -> list[Any]:
        """Forward hooks that keep each layer's keys before RoPE (``attention_keys``)."""
        layers = self._decoder_layers()
        kv_heads = int(getattr(self.text_config, "num_key_value_heads", None) or self.text_config.num_attention_heads)
        handles = []
        for index in range(*layer_range):
            attn = getattr(layers[index], "self_attn", None)
            if getattr(attn, "k_proj", None) is None:
                raise FocusModelError("source='keys' needs self_attn.k_proj in every decoder layer")
            handles.append(attention_keys(attn, store, index, kv_heads))
        return handles


def attention_keys(attn: torch.nn.Module, store: dict[int, torch.Tensor], index: int, kv_heads: int) -> Any:
    """A hook keeping the keys an attention layer uses, before RoPE: its
    ``k_norm`` output where it normalises keys per head (Qwen3-VL, Qwen3.5's
    full-attention layers: a learned scale per dimension, which changes the
    keys' directions), else its ``k_proj`` output."""
    norm = getattr(attn, "k_norm", None)
    return keep_projection(norm if norm is not None else attn.k_proj, store, index, kv_heads)


def keep_projection(
    proj: torch.nn.Module, store: dict[int, torch.Tensor], index: int, heads: int, part: slice = slice(None)
) -> Any:
    """A forward hook on a linear projection (or a per-head norm after one)
    that keeps ``output[..., part]`` of each prefill as ``store[index]``,
    ``[batch, heads, seq, head_dim]`` like the cache."""

    def keep(module: Any, args: Any, output: torch.Tensor) -> None:
        kept = (output.flatten(2) if output.dim() == 4 else output)[..., part]  # a norm's [batch, seq, heads, dim]
        batch, seq, width = kept.shape
        store[index] = kept.reshape(batch, seq, heads, width // heads).transpose(1, 2).detach()

    return proj.register_forward_hook(keep)


def batches(
    items: Sequence[Any], batch_size: int, should_stop: Callable[[], bool] | None, what: str
) -> Iterator[tuple[int, Sequence[Any]]]:
    """``(start, chunk)`` of ``batch_size`` items at a time; between chunks an
    ``InterruptedError`` ("FOCUS ``what`` interrupted") once ``should_stop()``."""
    for start in range(0, len(items), batch_size):
        if should_stop is not None and should_stop():
            raise InterruptedError(f"FOCUS {what} interrupted")
        yield start, items[start : start + batch_size]


def _stopping_criteria(
    should_stop: Callable[[], bool] | None = None, stop_strings: Sequence[str] = (), tokenizer: Any = None,
    prompt_length: int = 0,
) -> Any:
    """transformers stopping criteria that end generation once ``should_stop()``,
    or once the new text holds one of ``stop_strings`` (decoded by ``tokenizer``;
    transformers' own stop strings need a BPE-like vocabulary, not any tokenizer)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
            stop = should_stop is not None and bool(should_stop())
            if not stop and stop_strings:
                text = tokenizer.decode(input_ids[0, prompt_length:], skip_special_tokens=True)
                stop = any(marker in text for marker in stop_strings)
            return torch.full((input_ids.shape[0],), stop, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])


def _squash(text: str) -> str:
    return "".join(text.replace("\u2581", " ").replace("\u0120", " ").split()).lower()


def _find_subsequence(ids: list[int], tokenizer: Any, target: str) -> list[int]:
    """Positions of the last occurrence of the target's tokens (for tokenizers
    without offset mappings)."""
    for form in (" " + target, target):
        needle = tokenizer.encode(form, add_special_tokens=False)
        for start in range(len(ids) - len(needle), -1, -1):
            if needle and ids[start : start + len(needle)] == needle:
                return list(range(start, start + len(needle)))
    return []
