"""The model adapter interface: the only place that knows a model family.

``MLLM`` holds a Hugging Face model + processor and offers what the FOCUS
stages need: a prefill that returns the KV cache with the visual layout, a
batched yes/no confidence, and greedy generation. A family is one subclass
(one file) that states:

- ``view``: how an image is shown to its model (padded, resized, cropped) and
  where its visual tokens fall in the original image (a ``GridGeometry``);
- ``visual_grid_positions``: which sequence positions hold those tokens;
- ``Settings``: its own knobs (a dataclass; ``load_mllm(..., settings=...)``);
- ``load_processor``: how its processor is loaded from a folder;
- optionally ``family_defaults`` (FocusConfig fields), ``paper_layers``,
  ``refine_map``, ``before_forward`` (a hook run before every model call)
  and ``fallback_prompt``.

Everything else here is family-agnostic. Images reaching these methods are
RGB PIL images (the edges convert them); only ``relevance_map``, the public
one-call API, converts its input itself.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..config import FocusConfig, resolve_config
from ..cost import CallCounter
from ..errors import FocusConfigError, FocusInputError, FocusModelError
from ..grid import GridGeometry, RelevanceMap
from ..images import to_pil_rgb
from ..inputs import check_target
from ..kv import CACHE_KWARG, AnswerPrefill, Prefill, PromptRow, check_full_cache, output_cache
from ..prompts import EXISTENCE_PROMPT, MapPrompt, existence_prompt
from ..relevance import target_map
from .hf_loading import hf_call



@dataclass
class VisualView:
    """How one image is shown to the model, and where its tokens land."""

    images: list[Image.Image]
    """What goes to the processor for this image (already padded / resized)."""
    geometry: GridGeometry
    """The relevance grid over the original image."""
    rows: slice = field(default_factory=lambda: slice(None))
    cols: slice = field(default_factory=lambda: slice(None))
    """Which rows / columns of the model's full token grid the geometry keeps."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decoded:
    """A greedy answer and the probability the model gave each of its tokens."""

    text: str
    token_probabilities: list[float]


@dataclass(frozen=True)
class FamilySettings:
    """A family's own settings (none for the base). Subclasses add fields
    with defaults and check them in ``check``."""

    def check(self) -> None:
        """Raise FocusConfigError for a value the family cannot use."""

    def __post_init__(self) -> None:
        self.check()


class MLLM:
    """Base adapter; see the module docstring for what a family supplies."""

    family = "base"
    description = ""
    paper_layers: dict[int, tuple[int, int]] = {}
    """Tabulated layer ranges by decoder depth (the paper's per-model choices)."""
    interleaved_answer = False
    """Answer on [whole image with the ROI drawn, crop] rather than the crop alone."""
    Settings: type[FamilySettings] = FamilySettings
    """The family's own settings (a frozen dataclass)."""

    def __init__(
        self, model: Any, processor: Any, *, name: str | None = None, settings: FamilySettings | None = None
    ) -> None:
        self.model = model
        self.processor = processor
        self.settings = settings if settings is not None else self.Settings()
        self.tokenizer = getattr(processor, "tokenizer", None)
        if self.tokenizer is None:
            raise FocusModelError(
                f"the processor {type(processor).__name__} has no tokenizer; load the model's full "
                "processor (AutoProcessor.from_pretrained on the model folder)"
            )
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.counter = CallCounter()
        # left padding so that the last position of every row of a batch is its real last token
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.image_token = getattr(processor, "image_token", None) or "<image>"
        self.image_token_id = self._image_token_id()

    # --------------------------------------------------------------- settings
    @classmethod
    def make_settings(cls, settings: FamilySettings | Mapping[str, Any] | None) -> FamilySettings:
        """The family's Settings from a mapping of field names (None: defaults)."""
        if settings is None:
            return cls.Settings()
        if isinstance(settings, FamilySettings):
            if not isinstance(settings, cls.Settings):
                raise FocusConfigError(f"{type(settings).__name__} are not settings of the {cls.family} family")
            return settings
        known = {f.name for f in dataclasses.fields(cls.Settings)}
        unknown = sorted(set(settings) - known)
        if unknown:
            offered = ", ".join(sorted(known)) or "none"
            raise FocusConfigError(
                f"{', '.join(unknown)} {'is not a setting' if len(unknown) == 1 else 'are not settings'} of the "
                f"{cls.family} family; its settings: {offered}"
            )
        return cls.Settings(**settings)

    def with_settings(self, **changes: Any) -> "MLLM":
        """A second adapter over the same model and processor with some
        settings changed (this one is left as it is)."""
        settings = self.make_settings({**dataclasses.asdict(self.settings), **changes})
        return type(self)(self.model, self.processor, name=self.name, settings=settings)

    @classmethod
    def load_processor(cls, location: str, offline: bool, model_config: Any) -> Any:
        """The folder's processor (a family overrides this when its processor
        needs more than ``AutoProcessor``)."""
        from transformers import AutoProcessor

        return hf_call(AutoProcessor.from_pretrained, location, offline, what="processor")

    # ------------------------------------------------------------------ facts
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def text_config(self) -> Any:
        return self.model.config.get_text_config()

    @property
    def num_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    def default_layers(self, fraction: float = 0.55) -> tuple[int, int]:
        """The paper's range for a tabulated depth, else the last ``fraction``
        of the layers."""
        return self.paper_layers.get(self.num_layers) or layers_by_fraction(self.num_layers, fraction)

    def check_layers(self, layers: Sequence[int]) -> tuple[int, int]:
        """A half-open 0-based layer range, checked against this model's depth."""
        start, end = int(layers[0]), int(layers[1])
        if not 0 <= start < end <= self.num_layers:
            raise FocusConfigError(
                f"layer range ({start}, {end}) does not fit this model: it has {self.num_layers} decoder "
                f"layers, so use 0 <= start < end <= {self.num_layers} (half-open, 0-based)"
            )
        return start, end

    def family_defaults(self) -> dict[str, Any]:
        """FocusConfig fields this family fills in where the config says None
        (``resolve_config``); none beyond the general defaults here."""
        return {}

    def zoomeye_defaults(self) -> dict[str, Any]:
        """The ZoomEye baseline's constants for this family
        (``zoomeye.ZoomEyeSettings``): at least ``input_side``."""
        raise NotImplementedError(f"the {self.family} family has no ZoomEye settings")

    # ------------------------------------------------------- family interface
    def view(self, image: Image.Image) -> VisualView:
        raise NotImplementedError

    def visual_grid_positions(self, input_ids: torch.Tensor, view: VisualView) -> np.ndarray:
        raise NotImplementedError

    def refine_map(self, rmap: RelevanceMap) -> RelevanceMap:
        """Family post-processing of a relevance map (none by default)."""
        return rmap

    def before_forward(self, inputs: Mapping[str, Any]) -> None:
        """Run before every model call on the processor's output (none by
        default; a family checks inputs or resets model state here)."""

    def fallback_prompt(self, n_images: int, text: str) -> str:
        return "USER: " + (self.image_token + "\n") * n_images + text + " ASSISTANT:"

    def processor_inputs(self, views: Sequence[VisualView], texts: Sequence[str], **kwargs: Any) -> Any:
        """Run the processor on the views' images and the texts."""
        images = [im for v in views for im in v.images] or None
        inputs = self.processor(images=images, text=list(texts), return_tensors="pt", **kwargs)
        # a generic fast tokenizer adds token_type_ids, which no family's model takes (transformers 4.x refuses them)
        inputs.pop("token_type_ids", None)
        return inputs

    # ---------------------------------------------------------------- prompts
    def build_prompt(self, n_images: int, text: str) -> str:
        """The family's chat template around ``n_images`` images and ``text``."""
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(
                self._user_turn(n_images, text), add_generation_prompt=True, tokenize=False
            )
        return self.fallback_prompt(n_images, text)

    @staticmethod
    def _user_turn(n_images: int, text: str) -> list[dict[str, Any]]:
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
        return [{"role": "user", "content": content}]

    # --------------------------------------------------------------- prefill
    def prefill(
        self, image: Image.Image, target: str, *, capture_keys: tuple[int, int] | None = None
    ) -> Prefill:
        """One forward pass over ``image`` + the existence question about
        ``target``, keeping the KV cache (and pre-RoPE keys if asked)."""
        return self.prefill_prompts(image, [existence_prompt(target)], capture_keys=capture_keys)[0][target]

    def prefill_prompts(
        self, image: Image.Image, prompts: Sequence[MapPrompt], *, capture_keys: tuple[int, int] | None = None
    ) -> list[dict[str, Prefill]]:
        """One forward call over ``image`` with every prompt (a left-padded
        batch), keeping the KV cache; for each prompt, a ``Prefill`` of each
        target it names (they share the batch's cache). Counts one forward
        pass per prompt."""
        rows, _, _ = self._prefill(image, [p.text for p in prompts], capture_keys)
        return [self._row_prefills(row, prompt.spans) for row, prompt in zip(rows, prompts)]

    def prefill_answer(
        self, image: Image.Image, text: str, *, capture_keys: tuple[int, int] | None = None
    ) -> AnswerPrefill:
        """The prefill of the plain answer to ``text`` about the whole image,
        kept so that the answer can be decoded from it (``continue_answer``)
        and the maps of the targets the question names read from it
        (``answer_target_prefills``). One forward pass."""
        (row,), inputs, logits = self._prefill(image, [text], capture_keys)
        return AnswerPrefill(cache=row.cache, inputs=inputs, last_logits=logits[0], row=row)

    def answer_target_prefills(self, prefill: AnswerPrefill, prompt: MapPrompt) -> dict[str, Prefill]:
        """A ``Prefill`` for each target ``prompt`` spans, read from the answer
        prefill's cache (``prompt.text`` must be the text it was made from)."""
        if prompt.text != prefill.row.user_text:
            raise ValueError("the prompt's text is not the one the answer prefill was made from")
        return self._row_prefills(prefill.row, prompt.spans)

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
        input_ids = inputs["input_ids"].cpu()
        mask = inputs.get("attention_mask")
        pads = (mask.cpu() == 0).sum(dim=1).tolist() if mask is not None else [0] * len(chats)
        captured: dict[int, torch.Tensor] = {}
        handles = self._hook_pre_rope_keys(capture_keys, captured) if capture_keys else []
        try:
            with torch.inference_mode():
                out = self.model(**self._model_inputs(inputs), use_cache=True, logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()
        self.counter.forward_passes += len(chats)
        cache = output_cache(out)
        check_full_cache(cache, int(input_ids.shape[1]), self.num_layers)
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
                pre_rope_keys=row.pre_rope_keys, row=row.index, start=row.pad,
            )
        return prefills

    def relevance_map(
        self,
        image: Any,
        target: str,
        layers: tuple[int, int] | None = None,
        source: str | None = None,
        config: FocusConfig | None = None,
    ) -> RelevanceMap:
        """The FOCUS relevance map of ``target`` over ``image`` (any image
        input), in one call. ``layers`` / ``source`` override the config's
        (default: the family's layers, value vectors)."""
        overrides = {k: v for k, v in (("layers", layers), ("source", source)) if v is not None}
        resolved = resolve_config(self, config, **overrides)
        return target_map(self, to_pil_rgb(image), check_target(target), resolved)

    # ----------------------------------------------------- yes/no confidence
    def yes_no_confidence(
        self,
        images: Sequence[Any],
        targets: Sequence[str],
        batch_size: int = 8,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """``softmax(l_Yes, l_No)[Yes]`` at the last position of
        ``Is there a {target} in the image?`` for each (RGB image, target)
        pair; ``batch_size`` pairs go through the model together."""
        if len(images) != len(targets):
            raise FocusInputError(f"{len(images)} images but {len(targets)} targets; pass one target per image")
        prompts = [([image], EXISTENCE_PROMPT.format(target=target)) for image, target in zip(images, targets)]
        return self.yes_probability(prompts, batch_size=batch_size, should_stop=should_stop)

    def yes_probability(
        self,
        prompts: Sequence[tuple[Sequence[Image.Image], str]],
        batch_size: int = 8,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """``softmax(l_Yes, l_No)[Yes]`` at the last position of each yes/no
        question ``(images, text)`` (RGB images, in the order the text's image
        places take them); ``batch_size`` questions go through the model together."""
        out = np.zeros(len(prompts), dtype=np.float64)
        for start in range(0, len(prompts), batch_size):
            if should_stop is not None and should_stop():
                raise InterruptedError("FOCUS verification interrupted")
            chunk = prompts[start : start + batch_size]
            views = [self.view(image) for images, _ in chunk for image in images]
            texts = [self.build_prompt(len(images), text) for images, text in chunk]
            inputs = self.processor_inputs(views, texts, padding=True)
            with torch.inference_mode():
                logits = self.model(**self._model_inputs(inputs), use_cache=False, logits_to_keep=1).logits
            self.counter.forward_passes += len(chunk)
            last = logits[:, -1, :].float()
            yes = torch.logsumexp(last[:, self.yes_no_token_ids[0]], dim=-1)
            no = torch.logsumexp(last[:, self.yes_no_token_ids[1]], dim=-1)
            out[start : start + len(chunk)] = torch.sigmoid(yes - no).cpu().numpy()
        return out

    # -------------------------------------------------------------- generate
    def generate(
        self,
        text: str,
        images: Sequence[Any] = (),
        max_new_tokens: int = 64,
        should_stop: Callable[[], bool] | None = None,
    ) -> str:
        """Greedy answer to ``text`` about ``images`` (RGB; none for
        text-only); returns only the new text."""
        views = [self.view(im) for im in images]
        inputs = self.processor_inputs(views, [self.build_prompt(len(views), text)])
        return self._decode(inputs, None, max_new_tokens, should_stop).text

    def continue_answer(
        self, prefill: AnswerPrefill, max_new_tokens: int = 64, should_stop: Callable[[], bool] | None = None
    ) -> Decoded:
        """The greedy answer decoded from an answer prefill's cache: the same
        text ``generate`` gives for that prompt, without a second prefill (the
        last prompt token is run again to start the decoding)."""
        prefill.cache.crop(-1)  # negative: tokens to drop, in transformers 4.x and 5.x alike
        # the image is in the cache already: its pixels must not be encoded again
        text_only = {k: v for k, v in dict(prefill.inputs).items() if not k.startswith("pixel_values")}
        return self._decode(text_only, prefill.cache, max_new_tokens, should_stop)

    def _decode(
        self, inputs: Any, cache: Any, max_new_tokens: int, should_stop: Callable[[], bool] | None
    ) -> Decoded:
        kwargs: dict[str, Any] = {} if cache is None else {CACHE_KWARG: cache}
        if should_stop is not None:
            from transformers import StoppingCriteria, StoppingCriteriaList

            class _Stop(StoppingCriteria):
                def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
                    return torch.full((input_ids.shape[0],), bool(should_stop()), device=input_ids.device)

            kwargs["stopping_criteria"] = StoppingCriteriaList([_Stop()])
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
        new_tokens = out.sequences[0, inputs["input_ids"].shape[1] :]
        probabilities = [
            float(torch.softmax(step[0].float(), dim=-1)[token]) for step, token in zip(out.scores, new_tokens.tolist())
        ]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return Decoded(text=text, token_probabilities=probabilities)

    def option_losses(self, text: str, options: Sequence[str], images: Sequence[Any] = ()) -> list[float]:
        """Per option, the mean cross-entropy of the option given as the
        assistant's reply to ``text`` about ``images`` (V*Bench's "logits
        matching": one forward pass per option, the lowest loss wins). The
        reply ends as the chat template ends an assistant turn."""
        views = [self.view(im) for im in images]
        prompt = self.build_prompt(len(views), text)
        prompt_ids = self.processor_inputs(views, [prompt])["input_ids"][0]
        losses = []
        for option in options:
            inputs = self.processor_inputs(views, [prompt + self.assistant_reply(prompt, len(views), text, option)])
            ids = inputs["input_ids"][0]
            shared = 0  # the prompt's tokens come first; the reply's are the rest (robust to a merge at the seam)
            while shared < min(len(ids), len(prompt_ids)) and ids[shared] == prompt_ids[shared]:
                shared += 1
            if shared >= len(ids):
                raise FocusModelError(f"option {option!r} adds no tokens to the prompt; it cannot be scored")
            with torch.inference_mode():
                logits = self.model(**self._model_inputs(inputs)).logits[0]
            self.counter.generate_calls += 1
            target = ids[shared:].to(logits.device)
            losses.append(float(torch.nn.functional.cross_entropy(logits[shared - 1:-1].float(), target)))
        return losses

    def assistant_reply(self, prompt: str, n_images: int, text: str, reply: str) -> str:
        """What follows ``prompt`` (``build_prompt(n_images, text)``) when the
        assistant answers ``reply``: the chat template's own ending of the
        turn where it has one, else the reply and the end-of-sequence token."""
        if getattr(self.processor, "chat_template", None):
            answered = [{"role": "assistant", "content": [{"type": "text", "text": reply}]}]
            whole = self.processor.apply_chat_template(self._user_turn(n_images, text) + answered, tokenize=False)
            if whole.startswith(prompt) and reply in whole[len(prompt):]:
                return whole[len(prompt):]
        return " " + reply + (self.tokenizer.eos_token or "")

    # --------------------------------------------------------------- helpers
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
        so a model whose vocabulary lacks them still maps relevance)."""
        return self._answer_token_ids("Yes"), self._answer_token_ids("No")

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
        """Forward hooks that keep each layer's k_proj output (keys before RoPE)."""
        layers = self._decoder_layers()
        kv_heads = int(getattr(self.text_config, "num_key_value_heads", None) or self.text_config.num_attention_heads)
        handles = []
        for index in range(*layer_range):
            attn = getattr(layers[index], "self_attn", None)
            proj = getattr(attn, "k_proj", None)
            if proj is None:
                raise FocusModelError("source='keys' needs self_attn.k_proj in every decoder layer")

            def keep(module: Any, args: Any, output: torch.Tensor, index: int = index) -> None:
                batch, seq, width = output.shape  # -> [batch, kv_heads, seq, head_dim], like the cache
                store[index] = output.reshape(batch, seq, kv_heads, width // kv_heads).transpose(1, 2).detach()

            handles.append(proj.register_forward_hook(keep))
        return handles


def layers_by_fraction(num_layers: int, fraction: float) -> tuple[int, int]:
    """The last ``fraction`` of ``num_layers`` decoder layers (at least one)."""
    start = min(num_layers - 1, max(0, int(round(num_layers * (1.0 - fraction)))))
    return start, num_layers


def known_token(tokenizer: Any, token: str) -> tuple[str | None, int | None]:
    """``(token, id)`` if the vocabulary has ``token``, else ``(None, None)``
    (so a processor does not count unknown words as, say, video tokens)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None, None
    return token, token_id


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

