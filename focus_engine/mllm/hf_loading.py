"""Loading Hugging Face files local-first, with one clear error per failure.

A folder that exists is read with ``local_files_only=True`` and the network
is never contacted; a hub id is looked up in the local cache first and
downloaded only when missing and ``HF_HUB_OFFLINE`` is unset. Families whose
processor needs a video processor (hence torchvision) get an image-only one
(``image_only_processor_class``) assembled from the folder's parts
(``load_image_only_processor``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import FocusModelError

log = logging.getLogger("focus_engine")


TRANSFORMERS_RANGE = ((4, 56), (6, 0))
"""The transformers versions FOCUS supports: >= 4.56 (the per-layer cache
layout it reads) and < 6; CI tests the lowest (4.56.2) and the newest."""


def check_transformers(version: str | None = None) -> str:
    """The installed transformers version, or a FocusModelError naming the
    supported range and the command that installs it."""
    version = version or installed_transformers()
    numbers = list(version_tuple(version))
    (low_major, low_minor), (high_major, _) = TRANSFORMERS_RANGE
    if version == "none" or len(numbers) < 2 or not (low_major, low_minor) <= tuple(numbers) < (high_major, 0):
        raise FocusModelError(
            f"transformers {version} is installed; FOCUS supports transformers >= {low_major}.{low_minor} and "
            f"< {high_major}: pip install \"transformers>={low_major}.{low_minor},<{high_major}\" (in ComfyUI's Python "
            "environment for the nodes)"
        )
    return version


def installed_transformers() -> str:
    """The installed transformers version ("none" when it is missing)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("transformers")
    except PackageNotFoundError:
        return "none"


def version_tuple(version: str) -> tuple[int, ...]:
    """``(major, minor)`` of a version string ("4.57.0.dev0" -> (4, 57))."""
    numbers = []
    for part in version.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


def check_family_transformers(family: str, description: str, minimum: tuple[int, int],
                              version: str | None = None) -> None:
    """A FocusModelError naming the version and the pip command when the
    installed transformers is older than a family needs."""
    version = version or installed_transformers()
    if version != "none" and version_tuple(version) >= tuple(minimum):
        return
    low = f"{minimum[0]}.{minimum[1]}"
    high = TRANSFORMERS_RANGE[1][0]
    raise FocusModelError(
        f"{description} needs transformers >= {low} (the {family} family), but {version} is installed: "
        f"pip install \"transformers>={low},<{high}\" (in ComfyUI's Python environment for the nodes); the other "
        "families run on it as it is"
    )


def saved_model_type(location: str) -> str | None:
    """The ``model_type`` in a local folder's config.json, read without
    transformers (which cannot read the config of a model it does not know)."""
    try:
        data = json.loads((Path(location) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def hf_call(func: Callable[..., Any], location: str, offline: bool, *, what: str, **kwargs: Any) -> Any:
    """Call a transformers loader local-first; turn its errors into one clear message.
    Never with ``trust_remote_code``: no Python file of a model folder or
    repo is ever run (a folder whose config points at its own code is
    refused by transformers)."""
    kwargs["trust_remote_code"] = False
    try:
        return func(location, local_files_only=True, **kwargs)
    except Exception as error:  # noqa: BLE001 - transformers raises many types here
        local_error = error
        if offline:
            raise FocusModelError(
                f"could not load the {what} of {location!r} from local files: {first_line(local_error)}. "
                "Check that the folder holds the complete model (HF_HUB_OFFLINE is honoured: nothing is downloaded)"
            ) from local_error
    unreachable = hub_unreachable()
    if unreachable is not None:  # said at once, not after the hub client's retries
        raise FocusModelError(
            f"{location!r} is not a model folder here nor in the Hugging Face cache, and the hub cannot be reached "
            f"to download it: on a machine with internet run `huggingface-cli download {location} --local-dir "
            f"DIR`, copy DIR here and pass its path (in ComfyUI: into models/LLM/)\n  reason: {unreachable}"
        ) from local_error
    try:
        return func(location, **kwargs)
    except Exception as remote_error:  # noqa: BLE001
        raise FocusModelError(
            f"could not load the {what} of {location!r} from the Hugging Face hub: {first_line(remote_error)}. "
            "Without internet, download the model folder elsewhere and pass its path"
        ) from remote_error


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub (its endpoint, ``HF_ENDPOINT``) cannot be
    reached, or None when it answers a HEAD request within ``timeout``
    seconds. Asked through huggingface_hub's own HTTP session, so its proxy
    settings and endpoint apply and the pack opens no connection of its own."""
    from urllib.parse import urlparse

    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    url = urlparse(constants.ENDPOINT)
    where = f"{url.hostname}:{url.port or (443 if url.scheme == 'https' else 80)}"
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - requests and httpx (huggingface_hub >= 1) raise different types
        reason = str(exc).strip().splitlines()
        return f"no connection to {where} ({reason[-1][:200] if reason else type(exc).__name__})"
    return None


def load_image_only_processor(
    location: str, offline: bool, processor_class: type, defaults: Mapping[str, Any] | None = None
) -> Any:
    """The folder's own processor when it can be built; else
    ``processor_class`` from the folder's tokenizer, image processor and saved
    processor settings (over ``defaults``, e.g. settings implied by the model
    config for folders saved without a processor_config.json)."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(location, local_files_only=True, trust_remote_code=False)
        if hasattr(processor, "image_processor"):
            return processor
    except Exception as exc:  # noqa: BLE001 - without torchvision the video processor fails to build
        log.info("building an image-only processor for %s (%s)", location, first_line(exc))
    tokenizer = hf_call(AutoTokenizer.from_pretrained, location, offline, what="tokenizer")
    image_processor = hf_call(AutoImageProcessor.from_pretrained, location, offline, what="image processor")
    extra = {**(defaults or {}), **saved_processor_settings(location)}
    return processor_class(
        image_processor=image_processor, tokenizer=tokenizer,
        chat_template=extra.pop("chat_template", None) or getattr(tokenizer, "chat_template", None), **extra,
    )


def image_only_processor_class(
    processor_class: str,
    *,
    video_token: str,
    image_token: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> type:
    """``transformers.<processor_class>`` without its video processor (which
    needs torchvision): FOCUS only sends images. Named ``<family>ImageProcessorOnly``.

    ``video_token``: the family's video placeholder, kept only if the
    vocabulary has it (``known_token``). ``image_token``: the family's fixed
    image placeholder; ``None``: the tokenizer's own ``image_token``, else the
    ``image_token`` setting. ``settings``: the processor's own settings (name
    -> default), taken by keyword, kept as attributes and saved with the
    processor (they are in ``__init__``'s signature, which transformers reads)."""
    import inspect

    import transformers
    from transformers.processing_utils import ProcessorMixin

    defaults = dict(settings or {})
    fixed_image_token = image_token

    def __init__(self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None,
                 **kwargs: Any) -> None:
        values = {name: kwargs.get(name, default) for name, default in defaults.items()}
        for name, value in values.items():
            setattr(self, name, value)
        self.image_token = fixed_image_token or getattr(tokenizer, "image_token", None) or values.get("image_token")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token, self.video_token_id = known_token(tokenizer, video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    plain = inspect.Parameter.POSITIONAL_OR_KEYWORD
    __init__.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("self", plain),
        *(inspect.Parameter(name, plain, default=None) for name in ("image_processor", "tokenizer", "chat_template")),
        *(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value) for name, value in defaults.items()),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
    ])
    name = processor_class.removesuffix("Processor") + "ImageProcessorOnly"
    return type(name, (getattr(transformers, processor_class),), {
        # transformers 4.x reads these (5.x reads __init__): no video processor, any tokenizer class
        "attributes": ["image_processor", "tokenizer"],
        "image_processor_class": "AutoImageProcessor",
        "tokenizer_class": "AutoTokenizer",
        "__init__": __init__,
        "__module__": __name__,
        "__qualname__": name,
    })


def known_token(tokenizer: Any, token: str) -> tuple[str | None, int | None]:
    """``(token, id)`` if the vocabulary has ``token``, else ``(None, None)``
    (so a processor does not count unknown words as, say, video tokens)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None, None
    return token, token_id


def saved_processor_settings(location: str) -> dict[str, Any]:
    """The processor's own settings saved in the folder: processor_config.json,
    and the chat template of an older chat_template.json."""

    def read(name: str) -> dict[str, Any]:
        path = Path(location) / name
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    skip = ("processor_class", "image_processor", "video_processor", "auto_map")
    settings = {k: v for k, v in read("processor_config.json").items() if k not in skip}
    template = read("chat_template.json").get("chat_template")
    if template and "chat_template" not in settings:
        settings["chat_template"] = template
    return settings


def looks_like_path(text: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a path."""
    return (
        text.startswith((".", "/", "~", "\\"))
        or "\\" in text
        or text.count("/") > 1
        or (len(text) > 1 and text[1] == ":")
    )


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is on, as
    huggingface_hub read it when it was imported: the pack reads no
    environment variable itself."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
