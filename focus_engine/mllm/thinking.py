"""Chat templates that think by default, rendered in their non-thinking form.

Qwen3.5 (4B and larger), Qwen3.6 and the Qwen3-VL "Thinking" checkpoints ship
chat templates whose generation prompt ends inside an open ``<think>`` block:
the model's first reply token is the start of a reasoning trace, not the
answer. FOCUS reads a yes/no confidence at that first token and decodes
short replies (the targets, the answer), so every prompt it builds must end
where the answer starts:

1. a template that reads ``enable_thinking`` is rendered with it False
   (Qwen3.5 and Qwen3.6 then write the empty block
   ``<think>\\n\\n</think>\\n\\n`` themselves);
2. where the generation prompt still ends inside an open block (Qwen3-VL
   Thinking opens it regardless), the block is closed empty the way the
   model's own template closes it in an answered turn: the template renders
   the same question answered, and what it writes between the open block and
   the reply is appended;
3. where neither works, the model is refused at load (``FocusModelError``):
   nothing is run in a reasoning trace silently.

The closing is found on a probe turn (``reply_opening``) when the model
loads, before its weights, and appended to every prompt ``MLLM.build_prompt``
renders.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import FocusModelError
from .runtime import HFRuntime

THINK_TAGS: tuple[tuple[str, str], ...] = (("<think>", "</think>"),)
"""(opening, closing) of the reasoning blocks chat templates write: Qwen3's,
Qwen3-VL Thinking's, Qwen3.5's and Qwen3.6's."""

THINKING_FLAG = "enable_thinking"
"""The template variable that switches thinking off (Qwen3, Qwen3.5, Qwen3.6)."""

_PROBE_REPLY = "FOCUSPROBEREPLY"
"""A reply no template rewrites (no newline, no tag), to find where an
answered turn's reply starts."""


def template_kwargs(template: Any) -> dict[str, Any]:
    """What a rendering of ``template`` is given: ``enable_thinking=False``
    where the template reads the flag, nothing otherwise (transformers 5
    takes a variable a template does not use for a processor setting, and
    warns)."""
    return {THINKING_FLAG: False} if THINKING_FLAG in str(template) else {}


def render(processor: Any, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool, model_name: str) -> str:
    """The processor's chat template over ``messages``, non-thinking where the
    template reads the flag. A template comes from the model folder:
    transformers renders it in Jinja's immutable sandbox, never with Python
    of its own; what the sandbox refuses stops here with a FocusModelError."""
    from jinja2.exceptions import SecurityError

    try:
        return processor.apply_chat_template(
            list(messages), add_generation_prompt=add_generation_prompt, tokenize=False,
            **template_kwargs(processor.chat_template),
        )
    except SecurityError as exc:
        raise FocusModelError(
            f"the chat template of {model_name!r} tried something Jinja's sandbox refuses ({exc}); it was not run. "
            "Use the model's original template (chat_template.jinja / tokenizer_config.json)"
        ) from None


def open_block(text: str) -> tuple[str, str] | None:
    """The (opening, closing) tags of a reasoning block that ``text`` leaves
    open (its last opening tag is not followed by the closing one), else None."""
    for opening, closing in THINK_TAGS:
        at = text.rfind(opening)
        if at >= 0 and text.find(closing, at + len(opening)) < 0:
            return opening, closing
    return None


def reply_opening(processor: Any, model_name: str) -> str:
    """What to append to the template's generation prompt so that it ends
    where the answer starts: ``""`` where it already does (no template, no
    reasoning block, or one the template closed), else the closing of an
    empty block as the template writes it in an answered turn.
    ``FocusModelError`` where the template leaves a block open and shows no
    closing, or where the sandbox refuses it. Renders a probe turn only
    (no model call), so the loader runs it before the weights load."""
    if not getattr(processor, "chat_template", None):
        return ""

    def text(messages: Sequence[dict[str, Any]], generation: bool) -> str:
        return render(processor, messages, add_generation_prompt=generation, model_name=model_name)

    turn = HFRuntime._user_turn(1, "Is there a probe in the image? Answer Yes or No.")
    before = text(turn, False)
    prompt = text(turn, True)
    generation = prompt[len(before):] if prompt.startswith(before) else prompt
    tags = open_block(generation)
    if tags is None:
        return ""
    answered = text(turn + [{"role": "assistant", "content": [{"type": "text", "text": _PROBE_REPLY}]}], False)
    if answered.startswith(before) and _PROBE_REPLY in answered:
        head = answered[len(before):answered.index(_PROBE_REPLY)]
        if head.startswith(generation) and open_block(head) is None:
            return head[len(generation):]
    opening, closing = tags
    raise FocusModelError(
        f"the chat template of {model_name!r} ends its generation prompt inside an open {opening} block even "
        f"with enable_thinking=False, and its answered turns show no {closing} that closes it: every FOCUS "
        "prompt would be answered inside a reasoning trace (the yes/no confidence read at its first token, the "
        "targets and the answer cut off in it), so the model is not run. Give the model folder a chat template "
        "that can answer without thinking (e.g. the chat_template.jinja of the model's Instruct release), or "
        "one that reads enable_thinking"
    )
