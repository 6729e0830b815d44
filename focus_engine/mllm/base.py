"""The model adapter contract: the only place that knows a model family.

``MLLM`` holds a Hugging Face model + processor and offers what the FOCUS
stages need: a prefill that returns the KV cache with the visual layout, a
batched yes/no confidence, and greedy generation. A family is one subclass
(one file). It must state:

- ``view``: how an image is shown to its model (padded, resized, cropped) and
  where its visual tokens fall in the original image (a ``GridGeometry``);
- ``visual_grid_positions``: which sequence positions hold those tokens;
- ``zoomeye_defaults``: the ZoomEye baseline's constants for it (a
  ``config.ZoomEyeSettings``);

and it may state:

- ``Settings``: its own knobs (a ``FamilySettings`` dataclass;
  ``load_mllm(..., settings=...)``);
- ``load_processor``: how its processor is loaded from a folder;
- ``family_defaults`` (FocusConfig fields), ``paper_layers``, ``refine_map``,
  ``before_forward`` (a hook run before every model call), ``processor_inputs``
  and ``fallback_prompt``;
- ``min_transformers``: the lowest transformers its model classes need
  (loading on an older one stops with the pip command);
- hybrid models: ``recurrent_layers`` (layers whose cache holds a recurrent
  state, not per-token values) and ``hook_layer_values`` (per-token values
  of those layers captured during the prefill).

The family contract comes first below, then the facts and the public
methods. The Hugging Face plumbing the public methods share (batching, the
batched prefill, decoding, the decoder layers) is ``runtime.HFRuntime``, a
mixin a family author need not read. Images reaching these methods are RGB
PIL images (the edges convert them); only ``relevance_map``, the public
one-call API, converts its input itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..config import FocusConfig, ZoomEyeSettings, resolve_config
from ..cost import CallCounter
from ..errors import FocusConfigError, FocusInputError
from ..grid import RelevanceMap
from ..images import to_pil_rgb
from ..inputs import check_target
from ..kv import AnswerPrefill, Prefill
from ..prompts import EXISTENCE_PROMPT, MapPrompt, existence_prompt, verification_prompt
from ..relevance import target_map
from . import thinking
from .hf_loading import hf_call
from .prefixes import image_head, prefix_key
from .runtime import Decoded, HFRuntime, batches
from .view import VisualView

__all__ = ["Decoded", "EXISTENCE_PROMPT", "FamilySettings", "MLLM", "VisualView", "layers_by_fraction"]


@dataclass(frozen=True)
class FamilySettings:
    """A family's own settings (none for the base). Subclasses add fields
    with defaults and check them in ``check``."""

    def check(self) -> None:
        """Raise FocusConfigError for a value the family cannot use."""

    def __post_init__(self) -> None:
        self.check()


class MLLM(HFRuntime):
    """Base adapter; see the module docstring for what a family supplies."""

    # ================================================== the family contract
    family = "base"
    """The config's ``model_type`` (the key of ``loader.FAMILY_ADAPTERS``)."""
    description = ""
    paper_layers: dict[int, tuple[int, int]] = {}
    """Tabulated layer ranges by decoder depth (the paper's per-model choices)."""
    Settings: type[FamilySettings] = FamilySettings
    """The family's own settings (a frozen dataclass)."""
    min_transformers: tuple[int, int] = (4, 56)
    """The lowest transformers (major, minor) whose classes this family needs."""

    # ----------------------------------------------------- a family must state
    def view(self, image: Image.Image) -> VisualView:
        """How ``image`` is shown to the model and where its visual tokens
        fall in the original image."""
        raise NotImplementedError

    def visual_grid_positions(self, input_ids: torch.Tensor, view: VisualView) -> np.ndarray:
        """The sequence positions of ``view``'s grid cells in ``input_ids``
        (one prompt row, padding removed), shaped like ``view.geometry``."""
        raise NotImplementedError

    def zoomeye_defaults(self) -> ZoomEyeSettings:
        """The ZoomEye baseline's constants for this family (at least its
        encoder's ``input_side``)."""
        raise NotImplementedError(f"the {self.family} family has no ZoomEye settings")

    # ------------------------------------------------------ a family may state
    @classmethod
    def load_processor(cls, location: str, offline: bool, model_config: Any) -> Any:
        """The folder's processor (a family overrides this when its processor
        needs more than ``AutoProcessor``)."""
        from transformers import AutoProcessor

        return hf_call(AutoProcessor.from_pretrained, location, offline, what="processor")

    @classmethod
    def paper_settings(cls, dataset: str) -> dict[str, Any]:
        """FocusConfig fields the paper's Tab. 7 sets for this family on
        ``dataset`` (``vstar``, ``hrbench``, ``mme``, ``other``), for the
        ``paper`` preset; none where the paper does not configure the family."""
        return {}

    def family_defaults(self) -> dict[str, Any]:
        """FocusConfig fields this family fills in where the config says None
        (``resolve_config``); none beyond the general defaults here."""
        return {}

    def refine_map(self, rmap: RelevanceMap) -> RelevanceMap:
        """Family post-processing of a relevance map (none by default)."""
        return rmap

    def before_forward(self, inputs: Mapping[str, Any]) -> None:
        """Run before every model call on the processor's output (none by
        default; a family checks inputs or resets model state here)."""

    def processor_inputs(self, views: Sequence[VisualView], texts: Sequence[str], **kwargs: Any) -> Any:
        """Run the processor on the views' images and the texts."""
        images = [im for v in views for im in v.images] or None
        inputs = self.processor(images=images, text=list(texts), return_tensors="pt", **kwargs)
        # a generic fast tokenizer adds token_type_ids, which no family's model takes (transformers 4.x refuses them)
        inputs.pop("token_type_ids", None)
        return inputs

    @property
    def recurrent_layers(self) -> frozenset[int]:
        """Decoder layers whose cache keeps a recurrent state instead of
        per-token values (hybrid models); none by default."""
        return frozenset()

    def hook_layer_values(self, store: dict[int, torch.Tensor]) -> list[Any]:
        """Forward hooks, held for one prefill, that put per-token values of
        ``recurrent_layers`` in ``store`` (layer -> ``[batch, heads, seq,
        head_dim]``); a recurrent layer without them is left out of maps."""
        return []

    def prefix_state(self, inputs: Mapping[str, Any]) -> Any:
        """What continuing an image prefix needs besides its cache, read
        right after its prefill on ``inputs`` (``[rows, ...]``; none by
        default: positions go on from the cache's length)."""
        return None

    def continuation_kwargs(self, state: Any, start: int, length: int, batch: int) -> dict[str, Any]:
        """Model arguments for ``batch`` rows of ``length`` tokens going on
        from a prefix of ``start`` tokens whose ``prefix_state`` is ``state``
        (one row each); none by default."""
        return {}

    def fallback_prompt(self, n_images: int, text: str) -> str:
        """The prompt where the processor has no chat template."""
        return "USER: " + (self.image_token + "\n") * n_images + text + " ASSISTANT:"

    # ======================================================= construction
    def __init__(
        self, model: Any, processor: Any, *, name: str | None = None, settings: FamilySettings | None = None
    ) -> None:
        self.model = model
        self.processor = processor
        self.settings = settings if settings is not None else self.Settings()
        self._prepare_tokenizer()
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.counter = CallCounter()
        self.reply_opening = thinking.reply_opening(processor, self.name)
        """Appended to every rendered prompt: closes an empty reasoning block the
        template leaves open (``thinking.py``); ``""`` for most templates."""

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

    # ============================================================== facts
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

    @property
    def context_length(self) -> int | None:
        """The most positions the language model was trained on
        (``max_position_embeddings``), or None where the config does not say."""
        value = getattr(self.text_config, "max_position_embeddings", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def prompt_length(self, text: str, image: Image.Image | None = None) -> int:
        """Tokens of the prompt ``text`` in the chat template, with ``image``'s
        tokens (None: text only), as the model would read it. Runs the
        processor only, no model call."""
        views = [self.view(image)] if image is not None else []
        inputs = self.processor_inputs(views, [self.build_prompt(len(views), text)])
        return int(inputs["input_ids"].shape[-1])

    def text_length(self, text: str) -> int:
        """Tokens of ``text`` alone."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ===================================================== public methods
    # ---------------------------------------------------------------- prompts
    def build_prompt(self, n_images: int, text: str) -> str:
        """The family's chat template around ``n_images`` images and ``text``,
        ending where the answer starts: a template that thinks by default is
        rendered in its non-thinking form (``thinking.py``)."""
        if getattr(self.processor, "chat_template", None):
            return self._render(self._user_turn(n_images, text), add_generation_prompt=True) + self.reply_opening
        return self.fallback_prompt(n_images, text)

    def _render(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool) -> str:
        """The processor's chat template over ``messages`` (``thinking.render``:
        sandboxed, non-thinking where the template reads the flag)."""
        return thinking.render(self.processor, messages, add_generation_prompt=add_generation_prompt,
                               model_name=self.name)

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
        (``answer_target_prefills``). One forward pass. Within an open
        question (``question_scope``) the image's prefix is kept for the
        relevance prompts that follow."""
        (row,), inputs, logits = self._prefill(image, [text], capture_keys, keep_prefix=True)
        return AnswerPrefill(cache=row.cache, inputs=inputs, last_logits=logits[0], row=row)

    def answer_target_prefills(self, prefill: AnswerPrefill, prompt: MapPrompt) -> dict[str, Prefill]:
        """A ``Prefill`` for each target ``prompt`` spans, read from the answer
        prefill's cache (``prompt.text`` must be the text it was made from)."""
        if prompt.text != prefill.row.user_text:
            raise ValueError("the prompt's text is not the one the answer prefill was made from")
        return self._row_prefills(prefill.row, prompt.spans)

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
        answer_hint: bool = True,
        keep_prefixes: bool = True,
    ) -> np.ndarray:
        """``softmax(l_Yes, l_No)[Yes]`` at the last position of
        ``Is there a {target} in the image? Answer Yes or No.`` (without its
        last sentence when ``answer_hint`` is off: the paper's wording) for
        each (RGB image, target) pair; ``batch_size`` pairs go through the
        model together. ``keep_prefixes`` (within an open question): keep
        each target's surest crop's prefill for an answer on that crop."""
        if len(images) != len(targets):
            raise FocusInputError(f"{len(images)} images but {len(targets)} targets; pass one target per image")
        prompts = [([image], verification_prompt(target, answer_hint)) for image, target in zip(images, targets)]
        return self.yes_probability(prompts, batch_size=batch_size, should_stop=should_stop,
                                    keep_prefixes=keep_prefixes)

    def yes_probability(
        self,
        prompts: Sequence[tuple[Sequence[Image.Image], str]],
        batch_size: int = 8,
        should_stop: Callable[[], bool] | None = None,
        keep_prefixes: bool = True,
    ) -> np.ndarray:
        """``softmax(l_Yes, l_No)[Yes]`` at the last position of each yes/no
        question ``(images, text)`` (RGB images, in the order the text's image
        places take them); ``batch_size`` questions go through the model
        together. ``keep_prefixes``: see ``yes_no_confidence``."""
        out = np.zeros(len(prompts), dtype=np.float64)
        for start, chunk in batches(prompts, batch_size, should_stop, "verification"):
            out[start : start + len(chunk)] = self._yes_probability_batch(chunk, keep_prefixes)
        return out

    # -------------------------------------------------------------- generate
    def generate(self, text: str, images: Sequence[Any] = (), *args: Any, **kwargs: Any) -> str:
        """The text of ``reply`` (the same arguments): the greedy answer to
        ``text`` about ``images``, only the new text."""
        return self.reply(text, images, *args, **kwargs).text

    def reply(
        self,
        text: str,
        images: Sequence[Any] = (),
        max_new_tokens: int = 64,
        should_stop: Callable[[], bool] | None = None,
        *,
        reply_prefix: str = "",
        stop_strings: Sequence[str] = (),
        stop_after: str = "",
        lookup_tokens: int = 0,
        fixed_text: str = "",
    ) -> Decoded:
        """The greedy reply to ``text`` about ``images`` (RGB; none for
        text-only). ``reply_prefix`` is put in the assistant's mouth before it
        goes on; decoding ends early at any of ``stop_strings`` (in the new
        text after ``stop_after``, when given); ``lookup_tokens``: prompt-lookup
        decoding (``_decode``), for a reply that copies its prompt.
        ``fixed_text``: a start of ``text`` that many calls share (a few-shot
        prompt's examples), prefilled once per loaded model (``_text_prefix``).
        Within an open question, a reply about an image whose prefill the
        question kept (the crop it verified most surely, the whole image)
        goes on from that prefill."""
        views = [self.view(im) for im in images]
        chat = self.build_prompt(len(views), text) + reply_prefix
        ask = {"stop_strings": stop_strings, "stop_after": stop_after, "lookup_tokens": lookup_tokens}
        head = image_head(chat, self.image_token) if views else None
        if head is not None and self.reuse_prefixes and self.prefixes is not None:
            key = prefix_key(head, [im for view in views for im in view.images])
            prefix = self.prefixes.take(key, continued=False)
            decoded = self._decode_from_prefix(prefix, chat, max_new_tokens, should_stop, **ask) if prefix else None
            if decoded is not None:
                return decoded
        inputs = self.processor_inputs(views, [chat])
        reusable = fixed_text and not views and self.reuse_prefixes
        cache = self._text_prefix(chat, fixed_text, inputs) if reusable else None
        return self._decode(inputs, cache, max_new_tokens, should_stop, **ask)

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

    def option_losses(self, text: str, options: Sequence[str], images: Sequence[Any] = ()) -> list[float]:
        """Per option, the mean cross-entropy of the option given as the
        assistant's reply to ``text`` about ``images`` (V*Bench's "logits
        matching": one forward pass per option, the lowest loss wins). The
        reply ends as the chat template ends an assistant turn."""
        views = [self.view(im) for im in images]
        prompt = self.build_prompt(len(views), text)
        prompt_ids = self.processor_inputs(views, [prompt])["input_ids"][0]
        return [
            self._reply_loss(views, prompt_ids, prompt + self.assistant_reply(prompt, len(views), text, option), option)
            for option in options
        ]

    def assistant_reply(self, prompt: str, n_images: int, text: str, reply: str) -> str:
        """What follows ``prompt`` (``build_prompt(n_images, text)``) when the
        assistant answers ``reply``: the chat template's own ending of the
        turn where it has one, else the reply and the end-of-sequence token."""
        if getattr(self.processor, "chat_template", None):
            answered = [{"role": "assistant", "content": [{"type": "text", "text": reply}]}]
            whole = self._render(self._user_turn(n_images, text) + answered, add_generation_prompt=False)
            if whole.startswith(prompt) and reply in whole[len(prompt):]:
                return whole[len(prompt):]
        return " " + reply + (self.tokenizer.eos_token or "")


def layers_by_fraction(num_layers: int, fraction: float) -> tuple[int, int]:
    """The last ``fraction`` of ``num_layers`` decoder layers (at least one)."""
    start = min(num_layers - 1, max(0, int(round(num_layers * (1.0 - fraction)))))
    return start, num_layers
