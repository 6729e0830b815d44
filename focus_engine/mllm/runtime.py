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
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..cost import CallCounter
from ..errors import FocusInputError, FocusModelError, check_finite
from ..inputs import context_overflow
from ..kv import CACHE_KWARG, Prefill, PromptRow, check_full_cache, output_cache
from .prefixes import PER_TOKEN_INPUTS, ImagePrefix, PrefixStore, copy_cache, image_head, prefix_key, row_inputs

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
    reuse_prefixes: bool = True
    """Prefill a prompt's image prefix once and continue it (``prefixes.py``);
    off: every prompt is prefilled whole (for A/B and debugging)."""
    prefixes: PrefixStore | None = None
    """The prefixes the open question may use again (``question_scope``)."""

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
        def prefix_state(self, inputs: Mapping[str, Any]) -> Any: ...
        def continuation_kwargs(self, state: Any, start: int, length: int, batch: int) -> dict[str, Any]: ...

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
        self, image: Image.Image, texts: Sequence[str], capture_keys: tuple[int, int] | None,
        keep_prefix: bool = False,
    ) -> tuple[list[PromptRow], Any, torch.Tensor]:
        """One forward pass per user text over ``image``; per text, what
        locating its targets needs later. The texts go on from one prefill
        of the image (``_prefill_shared``) where there is something to
        share: several texts, a prefix the question kept, or ``keep_prefix``
        (keep the image's prefix for the question's next prompts)."""
        view = self.view(image)
        chats = [self.build_prompt(1, text) for text in texts]
        if self.reuse_prefixes:
            shared = self._prefill_shared(view, texts, chats, capture_keys, keep_prefix)
            if shared is not None:
                return shared
        try:
            inputs = self.processor_inputs([view] * len(chats), chats, padding=True, return_offsets_mapping=True)
            offsets = inputs.pop("offset_mapping").tolist()
        except (NotImplementedError, TypeError, ValueError, KeyError):
            inputs, offsets = self.processor_inputs([view] * len(chats), chats, padding=True), None
        self.check_context(inputs)
        input_ids = inputs["input_ids"].cpu()
        pads = _left_pads(inputs)
        out, captured, layer_values = self._capturing(
            capture_keys, lambda: self.model(**self._model_inputs(inputs), use_cache=True, logits_to_keep=1))
        self.counter.count_prompts(len(chats))
        cache = output_cache(out)
        check_full_cache(cache, int(input_ids.shape[1]), self.num_layers, skip=self.recurrent_layers)
        rows = [
            self._prompt_row(cache, index, pad, input_ids[index, pad:], chat, text, view,
                             offsets[index][pad:] if offsets is not None else None, captured, layer_values)
            for index, (text, chat, pad) in enumerate(zip(texts, chats, pads))
        ]
        return rows, inputs, out.logits[:, -1, :].float().cpu()

    def _capturing(
        self, capture_keys: tuple[int, int] | None, call: Callable[[], Any],
    ) -> tuple[Any, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """``call()`` (a model call, no gradients) with the hooks that keep
        the pre-RoPE keys over ``capture_keys`` and the recurrent layers'
        values; its output and what they kept."""
        captured: dict[int, torch.Tensor] = {}
        layer_values: dict[int, torch.Tensor] = {}
        handles = self._hook_pre_rope_keys(capture_keys, captured) if capture_keys else []
        handles += self.hook_layer_values(layer_values)
        try:
            with torch.inference_mode():
                out = call()
        finally:
            for handle in handles:
                handle.remove()
        return out, captured, layer_values

    def _prompt_row(
        self, cache: Any, index: int, pad: int, ids: torch.Tensor, chat: str, text: str, view: VisualView,
        offsets: list[list[int]] | None, captured: dict[int, torch.Tensor], layer_values: dict[int, torch.Tensor],
    ) -> PromptRow:
        at = chat.rfind(text)
        if at < 0:
            raise FocusModelError("the chat template dropped the question text; cannot locate the target tokens")
        return PromptRow(
            cache=cache, index=index, pad=pad, ids=ids, chat=chat, user_text=text, user_text_at=at,
            offsets=offsets, geometry=view.geometry, visual_positions=self.visual_grid_positions(ids, view),
            pre_rope_keys=captured or None, layer_values=layer_values or None,
            unmapped_layers=self.recurrent_layers - set(layer_values),
        )

    def _prefill_shared(
        self, view: VisualView, texts: Sequence[str], chats: Sequence[str], capture_keys: tuple[int, int] | None,
        keep_prefix: bool,
    ) -> tuple[list[PromptRow], Any, torch.Tensor] | None:
        """``_prefill`` through one prefix of the image: the prefix the
        question kept, or one prefilled here (kept for the question when
        ``keep_prefix``), then every text's rest in one continued call.
        None where there is nothing to share or the prompts do not split."""
        head = image_head(chats[0], self.image_token)
        if head is None or any(image_head(chat, self.image_token) != head for chat in chats):
            return None
        key = prefix_key(head, view.images)
        prefix = self.prefixes.take(key, capture_keys) if self.prefixes is not None else None
        # kept for the question's next prompts about the image: where asked, where it was kept before, and
        # where prefilled for several prompts (more targets than one call takes come next)
        keep = self.prefixes is not None and (keep_prefix or prefix is not None or len(chats) > 1)
        if prefix is None and len(chats) == 1 and not keep:
            return None  # one prompt, nothing to share: one call as before
        suffixes = [self._suffix_tokens(chat) for chat in chats]
        if any(s is None for s in suffixes):
            return None
        inputs = None
        if prefix is None:
            inputs = self.processor_inputs([view], [chats[0]])
            self.check_context(inputs)
            prefix = self._prefill_prefix(inputs, key, capture_keys, suffixes[0][0])
            if prefix is None:
                return None
        lengths = [prefix.length + len(ids) for ids, _ in suffixes]
        self.check_context({"input_ids": torch.zeros(1, max(lengths))})
        if keep:
            self.prefixes.offer(WHOLE_IMAGE_SLOT, key, prefix)
        logits, cache, captured, layer_values = self._continue(
            prefix, [ids for ids, _ in suffixes], capture_keys, consume=not keep)
        check_full_cache(cache, max(lengths), self.num_layers, skip=self.recurrent_layers)
        rows = []
        for index, (text, chat, (ids, offsets)) in enumerate(zip(texts, chats, suffixes)):
            row_ids = torch.cat([prefix.ids[0], torch.tensor(ids, dtype=prefix.ids.dtype)])
            if offsets is not None:
                # as the processor counts characters: each image token spelled out
                shift = (int((row_ids == self.image_token_id).sum()) - chat.count(self.image_token)) * len(self.image_token)
                offsets = [[0, 0]] * prefix.length + [[a + shift, b + shift] for a, b in offsets]
            rows.append(self._prompt_row(cache, index, 0, row_ids, chat, text, view, offsets, captured, layer_values))
        if inputs is None:
            inputs = self._continued_inputs(prefix, suffixes[0][0])
        return rows, inputs, logits

    def _prefill_prefix(
        self, inputs: Any, key: str, capture_keys: tuple[int, int] | None, alone: list[int] | None = None,
    ) -> ImagePrefix | None:
        """The image prefix of every row of ``inputs`` (processor output,
        left-padded), prefilled in one call: each row's tokens up to its last
        image token, which must be equally many in every row. With ``alone``
        (one row: its text after the image tokenized on its own,
        ``_suffix_tokens``): None unless those are the whole prompt's tokens
        there."""
        ids = inputs["input_ids"].cpu()
        pads = _left_pads(inputs)
        lengths = self._prefix_lengths(inputs)
        if lengths is None or len(set(lengths)) != 1:
            return None
        length = lengths[0]
        if alone is not None and alone != ids[0, pads[0] + length:].tolist():
            return None
        per_token = {
            name: torch.stack([value[row, pad : pad + length] for row, pad in enumerate(pads)])
            for name, value in dict(inputs).items() if name in PER_TOKEN_INPUTS and isinstance(value, torch.Tensor)
        }
        prefix_inputs = {**dict(inputs), **per_token}
        prefix_inputs["attention_mask"] = torch.ones_like(per_token["input_ids"])
        moved = self._model_inputs(prefix_inputs)
        out, captured, layer_values = self._capturing(
            capture_keys, lambda: self.model(**moved, use_cache=True, logits_to_keep=1))
        kept = {name: value for name, value in prefix_inputs.items()
                if isinstance(value, torch.Tensor) and not name.startswith("pixel_values")}
        return ImagePrefix(key=key, cache=output_cache(out), ids=per_token["input_ids"], inputs=kept,
                           state=self.prefix_state(moved), layer_values=layer_values or None,
                           pre_rope_keys=captured or None, keys_range=capture_keys)

    def _prefix_lengths(self, inputs: Any) -> list[int] | None:
        """Per row of ``inputs`` (left-padded processor output), its tokens
        up to and including its last image token; None if a row has no image."""
        ids = inputs["input_ids"].cpu()
        pads = _left_pads(inputs)
        ends = [self._image_end(ids[row]) for row in range(len(ids))]
        if any(end is None for end in ends):
            return None
        return [end - pad for end, pad in zip(ends, pads)]

    def _image_end(self, ids: Sequence[int] | torch.Tensor) -> int | None:
        """The position after the last image token of one row of token ids
        (None: the row shows no image)."""
        places = [i for i, token in enumerate(ids.tolist() if isinstance(ids, torch.Tensor) else ids)
                  if token == self.image_token_id]
        return places[-1] + 1 if places else None

    def _suffix_tokens(self, chat: str) -> tuple[list[int], list[list[int]] | None] | None:
        """The tokens of ``chat`` after its last image token, and their
        character offsets in ``chat`` (None where the tokenizer gives none),
        from the tokenizer alone (the image placeholder is one special token
        there; the processor only repeats it)."""
        try:
            encoded = self.tokenizer(chat, return_offsets_mapping=True)
            offsets = [list(pair) for pair in encoded["offset_mapping"]]
        except (NotImplementedError, TypeError, ValueError, KeyError):
            encoded, offsets = self.tokenizer(chat), None
        ids = list(encoded["input_ids"])
        cut = self._image_end(ids)
        if cut is None or cut == len(ids):
            return None
        return ids[cut:], offsets[cut:] if offsets is not None else None

    def _continue(
        self, prefix: ImagePrefix, suffixes: Sequence[Sequence[int]], capture_keys: tuple[int, int] | None,
        consume: bool,
    ) -> tuple[torch.Tensor, Any, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """One call continuing ``prefix`` with each suffix (one row of the
        prefix each, or its one row for all); the rows right-padded, so no
        real token sees a pad. Returns each row's next-token logits at its
        last real token, the cache, and the captured keys and values of the
        whole rows (the prefix's before the suffix's). ``consume``: the
        prefix is not used again, its cache is continued in place. Counts
        one forward pass per suffix (``CallCounter.count_prompts``)."""
        batch = len(suffixes)
        if prefix.rows not in (1, batch):
            raise ValueError(f"a prefix of {prefix.rows} rows cannot continue {batch} prompts")
        rows = list(range(batch)) if prefix.rows == batch else [0] * batch
        if consume:
            cache = prefix.cache
            if prefix.rows != batch:
                cache.reorder_cache(torch.tensor(rows, dtype=torch.long))
        else:
            cache = copy_cache(prefix.cache, None if prefix.rows == batch else rows)
        width = max(len(ids) for ids in suffixes)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((batch, width), int(pad_id), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            ids[row, : len(suffix)] = torch.as_tensor(list(suffix), dtype=torch.long)
        state = prefix.state if prefix.state is None or prefix.rows == batch else prefix.state[rows]
        kwargs = self.continuation_kwargs(state, prefix.length, width, batch)
        out, captured, layer_values = self._capturing(
            capture_keys, lambda: self.model(input_ids=ids.to(self.device), **{CACHE_KWARG: cache}, use_cache=True,
                                             **kwargs))
        self.counter.count_prompts(batch)
        last = torch.tensor([len(s) - 1 for s in suffixes], device=out.logits.device)
        logits = out.logits[torch.arange(batch, device=last.device), last].float().cpu()
        return (logits, output_cache(out), _joined(prefix.pre_rope_keys, captured, rows),
                _joined(prefix.layer_values, layer_values, rows))

    def _continued_inputs(self, prefix: ImagePrefix, suffix: Sequence[int]) -> dict[str, Any]:
        """The whole prompt's inputs, text only (the image is in the
        prefix's cache), for decoding on from the prefix's first row."""
        inputs = {}
        for name, value in prefix.inputs.items():
            if name in PER_TOKEN_INPUTS:
                rest = torch.as_tensor(list(suffix), dtype=value.dtype) if name == "input_ids" else (
                    torch.ones(len(suffix), dtype=value.dtype) if name == "attention_mask"
                    else torch.zeros(len(suffix), dtype=value.dtype))
                value = torch.cat([value[0], rest])[None]
            inputs[name] = value
        return inputs

    def _decode_from_prefix(self, prefix: ImagePrefix, chat: str, max_new_tokens: int,
                            should_stop: Callable[[], bool] | None, **kwargs: Any) -> Decoded | None:
        """The greedy reply to ``chat`` decoded on from ``prefix`` (consumed),
        or None where the chat does not split after its image."""
        suffix = self._suffix_tokens(chat)
        if suffix is None:
            return None
        inputs = self._continued_inputs(prefix, suffix[0])
        return self._decode(inputs, prefix.cache, max_new_tokens, should_stop, **kwargs)

    def _text_prefix(self, chat: str, fixed_text: str, inputs: Any) -> Any | None:
        """A copy of the cache of ``chat``'s start up to ``fixed_text`` (a
        text-only prompt's part that many calls share), prefilled once per
        loaded model, to decode ``inputs`` on from; None where ``inputs`` do
        not start with its tokens. The last two tokens of the fixed text are
        left to the call (they may merge with the text after it)."""
        at = chat.find(fixed_text)
        if at < 0:
            return None
        head = chat[: at + len(fixed_text)]
        kept = self.__dict__.setdefault("_text_prefixes", {})
        if head not in kept:
            head_ids = list(self.tokenizer(head)["input_ids"])[:-2]
            if not head_ids:
                return None
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([head_ids], device=self.device), use_cache=True,
                                 logits_to_keep=1)
            kept.clear()  # one fixed text per model (the target-extraction examples)
            kept[head] = (head_ids, output_cache(out))
        head_ids, cache = kept[head]
        ids = inputs["input_ids"][0].tolist()
        if len(ids) <= len(head_ids) or ids[: len(head_ids)] != head_ids:
            return None
        return copy_cache(cache)

    @contextmanager
    def question_scope(self, reuse: bool = True) -> Iterator[None]:
        """One question: with ``reuse``, its image prefixes are kept for its
        later prompts (``PrefixStore``) and dropped when it ends; without,
        every prompt is prefilled whole."""
        previous = self.reuse_prefixes, self.prefixes
        self.reuse_prefixes, self.prefixes = reuse, PrefixStore() if reuse else None
        try:
            yield
        finally:
            if self.prefixes is not None:
                self.prefixes.clear()
            self.reuse_prefixes, self.prefixes = previous

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
    def _yes_probability_batch(self, chunk: Sequence[tuple[Sequence[Image.Image], str]],
                               keep_prefixes: bool = True) -> np.ndarray:
        """``softmax(l_Yes, l_No)[Yes]`` of each question of ``chunk``, in one
        forward call; within an open question (``question_scope``), each
        question's image prefix is offered to the store under its question
        (kept while its answer is the surest so far: the answer may look at
        that crop next), ``KEPT_ROWS`` questions a call."""
        per_question = [[self.view(image) for image in images] for images, _ in chunk]
        texts = [self.build_prompt(len(images), text) for images, text in chunk]
        keeping = keep_prefixes and self.reuse_prefixes and self.prefixes is not None
        step = KEPT_ROWS if keeping else len(chunk)
        parts = []
        for at in range(0, len(chunk), step):
            views = [view for shown in per_question[at : at + step] for view in shown]
            logits = self._yes_logits_keeping_prefixes(chunk[at : at + step], views, texts[at : at + step]) \
                if keeping else None
            parts.append(logits if logits is not None else self._yes_logits_whole(views, texts[at : at + step]))
        return self._yes_confidence(torch.cat(parts))

    def _yes_logits_whole(self, views: Sequence[VisualView], texts: Sequence[str]) -> torch.Tensor:
        """The last-token logits of each whole prompt, in one call (left-padded)."""
        inputs = self.processor_inputs(views, texts, padding=True)
        self.check_context(inputs)
        with torch.inference_mode():
            logits = self.model(**self._model_inputs(inputs), use_cache=False, logits_to_keep=1).logits
        self.counter.count_prompts(len(texts))
        return logits[:, -1, :].float().cpu()

    def _yes_confidence(self, last: torch.Tensor) -> np.ndarray:
        last = last.float()
        yes = torch.logsumexp(last[:, self.yes_no_token_ids[0]], dim=-1)
        no = torch.logsumexp(last[:, self.yes_no_token_ids[1]], dim=-1)
        confidence = torch.sigmoid(yes - no)
        check_finite(confidence, "yes/no confidence")
        return confidence.cpu().numpy()

    def _yes_logits_keeping_prefixes(
        self, chunk: Sequence[tuple[Sequence[Image.Image], str]], views: Sequence[VisualView], texts: Sequence[str],
    ) -> torch.Tensor | None:
        """The last-token logits of each question of ``chunk``, its image
        prefix offered to the store. A decoder that only attends (no
        recurrent state) runs the whole prompts in one call, right-padded,
        so that each row's cache starts with its prefix, exactly as a
        prefix-only prefill would leave it; a hybrid one prefills the
        prefixes (one call) and continues them (one call). None where the
        prompts do not split after their images (then they go whole)."""
        heads = [image_head(text, self.image_token) for text in texts]
        if any(head is None for head in heads):
            return None
        shown, place = [], 0
        for images, _ in chunk:
            shown.append([im for view in views[place : place + len(images)] for im in view.images])
            place += len(images)
        keys = [prefix_key(head, images) for head, images in zip(heads, shown)]
        if self.recurrent_layers:
            found = self._prefixes_continued(chunk, views, texts)
        else:
            found = self._whole_prompts_right_padded(views, texts, [len(images) for images, _ in chunk])
        if found is None:
            return None
        logits, kept, suffixes = found
        confidences = self._yes_confidence(logits)
        for row, (text, head) in enumerate(zip(texts, heads)):
            # kept only where the text after the image tokenizes alone as in the whole prompt: an answer
            # going on from it is tokenized so (_decode_from_prefix)
            alone = self._suffix_tokens(text)
            if alone is not None and alone[0] == suffixes[row]:
                self.prefixes.offer(text[len(head):], keys[row], functools.partial(_keyed, kept, row, keys[row]),
                                    float(confidences[row]))
        return logits

    def _prefixes_continued(
        self, chunk: Sequence[tuple[Sequence[Image.Image], str]], views: Sequence[VisualView], texts: Sequence[str],
    ) -> tuple[torch.Tensor, Callable[[int], ImagePrefix], list[list[int]]] | None:
        """The questions' image prefixes prefilled, then the questions
        continued (a recurrent state cannot be cut back to a prefix, so the
        prefix is its own call); prefixes of equal length go together (two
        calls a group). Each row's last-token logits, a function giving row
        ``i``'s prefix, and each row's tokens after its prefix."""
        places, at = [], 0
        for images, _ in chunk:
            places.append(list(range(at, at + len(images))))
            at += len(images)
        every = self.processor_inputs(views, texts, padding=True)
        self.check_context(every)
        lengths = self._prefix_lengths(every)
        if lengths is None:
            return None
        logits: list[torch.Tensor] = [torch.empty(0)] * len(texts)
        suffixes: list[list[int]] = [[] for _ in texts]
        prefixes: dict[int, tuple[ImagePrefix, int]] = {}
        for length in sorted(set(lengths)):
            rows = [row for row in range(len(texts)) if lengths[row] == length]
            inputs = every if len(rows) == len(texts) else self.processor_inputs(
                [views[i] for row in rows for i in places[row]], [texts[row] for row in rows], padding=True)
            prefix = self._prefill_prefix(inputs, "", None)
            if prefix is None:
                return None
            prefix.images_per_row = [len(places[row]) for row in rows]
            pads = _left_pads(inputs)
            ids = inputs["input_ids"].cpu()
            group_suffixes = [ids[i, pad + prefix.length:].tolist() for i, pad in enumerate(pads)]
            group, _, _, _ = self._continue(prefix, group_suffixes, None, consume=False)
            for i, row in enumerate(rows):
                logits[row], suffixes[row], prefixes[row] = group[i], group_suffixes[i], (prefix, i)

        def kept(row: int) -> ImagePrefix:
            prefix, index = prefixes[row]
            return prefix.row(index)

        return torch.stack(logits), kept, suffixes

    def _whole_prompts_right_padded(
        self, views: Sequence[VisualView], texts: Sequence[str], images_per_row: Sequence[int],
    ) -> tuple[torch.Tensor, Callable[[int], ImagePrefix], list[list[int]]] | None:
        """One call over the whole prompts, right-padded: each row's
        last-token logits, a function giving row ``i``'s image prefix (its
        cache cut after its last image token; it decodes on, it does not
        continue in a batch: ``continuable`` False), and each row's tokens
        after its prefix."""
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "right"
        try:
            inputs = self.processor_inputs(views, texts, padding=True)
        finally:
            self.tokenizer.padding_side = side
        self.check_context(inputs)
        ids = inputs["input_ids"].cpu()
        mask = inputs.get("attention_mask")
        lengths = mask.cpu().sum(dim=1).tolist() if mask is not None else [ids.shape[1]] * len(texts)
        if mask is not None and any(bool((mask[row, :length] == 0).any()) for row, length in enumerate(lengths)):
            return None  # not right-padded after all
        ends = [self._image_end(ids[row]) for row in range(len(texts))]
        if any(end is None or end >= length for end, length in zip(ends, lengths)):
            return None
        last = sorted(set(length - 1 for length in lengths))
        with torch.inference_mode():
            out = self.model(**self._model_inputs(inputs), use_cache=True,
                             logits_to_keep=torch.tensor(last, device=self.device))
        self.counter.count_prompts(len(texts))
        cache = output_cache(out)
        logits = torch.stack([out.logits[row, last.index(length - 1)] for row, length in enumerate(lengths)])

        def prefix(row: int) -> ImagePrefix:
            end = ends[row]
            row_cache = cache if len(texts) == 1 else copy_cache(cache, [row])  # one row: nothing else needs it
            row_cache.crop(end - int(ids.shape[1]))  # negative: the tokens to drop, in transformers 4.x and 5.x
            per_row = {name: value[:, :end] if name in PER_TOKEN_INPUTS else value
                       for name, value in row_inputs(dict(inputs), row, images_per_row).items()}
            return ImagePrefix(key="", cache=row_cache, ids=ids[row : row + 1, :end].clone(), inputs=per_row,
                               continuable=False)

        return logits.float().cpu(), prefix, [ids[row, end:length].tolist() for row, (end, length) in
                                               enumerate(zip(ends, lengths))]

    # ------------------------------------------------------------- decoding
    def _decode(
        self, inputs: Any, cache: Any, max_new_tokens: int, should_stop: Callable[[], bool] | None,
        stop_strings: Sequence[str] = (), lookup_tokens: int = 0, stop_after: str = "",
    ) -> Decoded:
        """Greedy decoding of ``inputs`` (from ``cache`` when given: the
        prefill of their first tokens), with the probability of each new
        token; it ends early at any of ``stop_strings`` (in the text after
        ``stop_after``, when given).
        ``lookup_tokens`` > 0: prompt-lookup decoding, which proposes up to
        that many tokens copied from the prompt and checks them in one call
        (the greedy answer, in fewer calls, where the reply copies the
        prompt): ``_decode_looking_up`` for a text-only prompt, else
        transformers' (whose first step ignores a given cache in 5.x, so it
        is not used with one)."""
        self.check_context(inputs, max_new_tokens)
        if lookup_tokens > 0 and not self.recurrent_layers and not any(k.startswith("pixel_values") for k in inputs):
            return self._decode_looking_up(inputs, cache, max_new_tokens, should_stop, stop_strings, stop_after,
                                           lookup_tokens)
        kwargs: dict[str, Any] = {} if cache is None else {CACHE_KWARG: cache}
        if lookup_tokens > 0 and not self.recurrent_layers:  # a recurrent state cannot take back rejected tokens
            kwargs["prompt_lookup_num_tokens"] = lookup_tokens
        if should_stop is not None or stop_strings:
            kwargs["stopping_criteria"] = _stopping_criteria(should_stop, stop_strings, self.tokenizer,
                                                             int(inputs["input_ids"].shape[1]), stop_after)
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
        self.counter.decoded_tokens += len(new_tokens)
        probabilities = [
            float(torch.softmax(step[0].float(), dim=-1)[token]) for step, token in zip(out.scores, new_tokens.tolist())
        ]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        cut_off = not ended and len(new_tokens) >= max_new_tokens and not any(
            s in _after(text, stop_after) for s in stop_strings)
        return Decoded(text=text, token_probabilities=probabilities, cut_off=cut_off)

    def _decode_looking_up(
        self, inputs: Any, cache: Any, max_new_tokens: int, should_stop: Callable[[], bool] | None,
        stop_strings: Sequence[str], stop_after: str, lookup_tokens: int,
    ) -> Decoded:
        """Greedy prompt-lookup decoding of a text-only prompt, from ``cache``
        (the prefill of its first tokens) when given. Each call runs the
        tokens the cache lacks and up to ``lookup_tokens`` proposed ones (what
        followed the last place the reply's last two tokens, else its last
        one, occurred: transformers' prompt lookup); the proposals the greedy
        choice confirms are kept, with the greedy token after them, and the
        cache drops the rest. The same tokens as one call per token, in fewer
        calls (its arithmetic runs in chunks, so a near-tie may fall the
        other way, as with transformers' own). Written here because
        transformers 5.x's assisted decoding runs the whole prompt again on
        a cache it is given."""
        sequence = inputs["input_ids"][0].tolist()
        prompt_length = len(sequence)
        cached = 0 if cache is None else int(cache.get_seq_length())
        eos = self._eos_ids()
        new: list[int] = []
        probabilities: list[float] = []
        ended = stopped = False
        while not (ended or stopped) and len(new) < max_new_tokens:
            if should_stop is not None and should_stop():
                raise InterruptedError("FOCUS generation interrupted")
            proposed = _lookup(sequence, lookup_tokens)[: max(0, max_new_tokens - len(new) - 1)]
            feed = sequence[cached:] + proposed
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([feed], device=self.device), **{CACHE_KWARG: cache},
                                 use_cache=True, logits_to_keep=len(proposed) + 1,
                                 **self.continuation_kwargs(None, cached, len(feed), 1))
            cache = output_cache(out)
            scores = out.logits[0].float()
            greedy = scores.argmax(dim=-1).tolist()
            matched = 0
            while matched < len(proposed) and proposed[matched] == greedy[matched]:
                matched += 1
            accepted = proposed[:matched] + [greedy[matched]]
            for step, token in enumerate(accepted):
                probabilities.append(float(torch.softmax(scores[step], dim=-1)[token]))
                new.append(token)
                if token in eos or len(new) >= max_new_tokens:
                    ended = token in eos
                    break
            sequence = sequence[:prompt_length] + new
            cached = len(sequence) - 1
            unconfirmed = int(cache.get_seq_length()) - cached
            if unconfirmed > 0:  # crop(-n) drops n in transformers 4.x and 5.x alike; crop(0) empties a 4.x cache
                cache.crop(-unconfirmed)
            if stop_strings:
                text = _after(self.tokenizer.decode(new, skip_special_tokens=True), stop_after)
                stopped = any(marker in text for marker in stop_strings)
        self.counter.generate_calls += 1
        self.counter.decoded_tokens += len(new)
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        cut_off = not ended and len(new) >= max_new_tokens and not any(
            s in _after(text, stop_after) for s in stop_strings)
        return Decoded(text=text, token_probabilities=probabilities[: len(new)], cut_off=cut_off)

    def _eos_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        return {self.tokenizer.eos_token_id} | set(eos if isinstance(eos, (list, tuple)) else [eos])

    def _within_limits(self, new_tokens: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, bool]:
        """The greedy reply as one-token-a-call decoding ends it: at most
        ``max_new_tokens``, and nothing after the first end-of-sequence token
        (transformers 4.56's prompt-lookup decoding can accept a checked run
        of tokens past either; the tokens before are the same); and whether
        it ended with that token."""
        new_tokens = new_tokens[:max_new_tokens]
        eos = self._eos_ids()
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


def _after(text: str, marker: str) -> str:
    """``text`` after the last ``marker`` (all of it for no marker; "" while the marker has not come)."""
    if not marker:
        return text
    at = text.rfind(marker)
    return text[at + len(marker):] if at >= 0 else ""


def _stopping_criteria(
    should_stop: Callable[[], bool] | None = None, stop_strings: Sequence[str] = (), tokenizer: Any = None,
    prompt_length: int = 0, stop_after: str = "",
) -> Any:
    """transformers stopping criteria that end generation once ``should_stop()``,
    or once the new text (after ``stop_after``, when given) holds one of
    ``stop_strings`` (decoded by ``tokenizer``; transformers' own stop
    strings need a BPE-like vocabulary, not any tokenizer)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
            stop = should_stop is not None and bool(should_stop())
            if not stop and stop_strings:
                text = _after(tokenizer.decode(input_ids[0, prompt_length:], skip_special_tokens=True), stop_after)
                stop = any(marker in text for marker in stop_strings)
            return torch.full((input_ids.shape[0],), stop, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])


KEPT_ROWS = 2
"""Yes/no questions per call when their prefixes are kept (``question_scope``):
such a call holds every row's KV cache to its end, so a batch of 8 crops
would hold 8 prefixes at once (on LLaVA-1.5-7B, 0.3 GB each); 2 keep the
peak near the relevance prefill's of two targets."""


def _left_pads(inputs: Any) -> list[int]:
    """Per row of left-padded processor output, how many pad tokens open it."""
    mask = inputs.get("attention_mask")
    return (mask.cpu() == 0).sum(dim=1).tolist() if mask is not None else [0] * len(inputs["input_ids"])


def _lookup(sequence: Sequence[int], count: int, longest: int = 2) -> list[int]:
    """Up to ``count`` tokens proposed for what follows ``sequence``: the
    tokens after the first earlier place where its last ``longest`` tokens
    occur (then its last ``longest - 1``, ...), as transformers' prompt
    lookup proposes them."""
    for size in range(longest, 0, -1):
        if len(sequence) <= size:
            continue
        tail = list(sequence[-size:])
        for start in range(len(sequence) - size):
            if list(sequence[start : start + size]) == tail:
                follow = list(sequence[start + size : start + size + count])
                if follow:
                    return follow
    return []


WHOLE_IMAGE_SLOT = "whole image"
"""The store's slot for the question's whole image (the gate's answer
prefill leaves it there for the relevance prompts)."""


def _keyed(make: Callable[[int], ImagePrefix], row: int, key: str) -> ImagePrefix:
    """Row ``row``'s prefix (``make(row)``), labelled with what it shows."""
    prefix = make(row)
    prefix.key = key
    return prefix


def _joined(prefix_part: dict[int, torch.Tensor] | None, rest: dict[int, torch.Tensor],
            rows: list[int]) -> dict[int, torch.Tensor]:
    """Per layer, a prefix's captured ``[rows, heads, length, dim]`` (its
    ``rows``, in order) followed by the continuation's along the sequence."""
    if not rest:
        return {}
    if prefix_part is None or set(prefix_part) != set(rest):
        raise FocusModelError("the image prefix holds other captured layers than its continuation")
    return {layer: torch.cat([prefix_part[layer][rows].to(value.device), value], dim=2) for layer, value in rest.items()}


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
