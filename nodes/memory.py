"""FOCUS_MLLM: a model whose weights ComfyUI's model manager can release.

The loaded weights are registered in ``comfy.model_management`` as one of its
loaded models (``FocusModelPatcher``), so "Unload Models", ``POST /free`` and
the freeing ComfyUI does to make room for a diffusion model release them as
they release their own. Releasing drops the weights entirely (an MLLM has no
cheaper offloaded state worth keeping in RAM beside a diffusion model); the
next FOCUS node that needs the model loads it again from the same folder with
the same options, so a cached FOCUS_MLLM never goes stale.
"""

from __future__ import annotations

import gc
import threading
import uuid
from typing import Any, Callable

from . import bridge


class ManagedMLLM:
    """What flows through a FOCUS_MLLM socket: how to load the model, and the
    model while it is loaded. ``get()`` gives the engine's adapter."""

    def __init__(self, load: Callable[[], Any], description: str, keep_loaded: bool = True,
                 before_load: Callable[[], None] | None = None) -> None:
        self._load = load
        self._before_load = before_load
        self.description = description
        self.keep_loaded = keep_loaded
        self._mllm: Any = None
        self._patcher: FocusModelPatcher | None = None
        self._released_patcher: FocusModelPatcher | None = None
        """The patcher ComfyUI was unloading, weights dropped: ComfyUI holds it only
        weakly and still reads it after ``detach`` (0.25 logs its model's class)."""
        self._lock = threading.RLock()
        self.loads = 0
        """How many times the weights were loaded (a reload after a release counts)."""

    @property
    def loaded(self) -> bool:
        return self._mllm is not None

    def get(self) -> Any:
        """The loaded adapter; loads (again) if it was released. Inside
        ComfyUI the model manager is told the model is in use, so it makes
        room for it first and does not release it mid-node."""
        with self._lock:
            if self._mllm is None:
                if self._before_load is not None:
                    self._before_load()
                self._mllm = self._load()
                self.loads += 1
                self._patcher = FocusModelPatcher(self)
            bridge.use_model(self._patcher)
            return self._mllm

    def release(self, *, by_comfy: bool = False) -> None:
        """Drop the weights (they load again on the next ``get()``).
        ``by_comfy``: ComfyUI is unloading it and takes it off its own list."""
        with self._lock:
            if self._mllm is None:
                return
            if self._patcher is not None:
                # before the weights go: ComfyUI watches them and would also drop its entry when they die
                bridge.forget_model(self._patcher, keep_entry=by_comfy)
                self._patcher.model = None
            self._released_patcher = self._patcher if by_comfy else None
            self._patcher, self._mllm = None, None
        gc.collect()
        bridge.empty_device_cache()
        trim_heap()
        bridge.log.info("FOCUS: released %s%s", self.description, " (ComfyUI freed it)" if by_comfy else "")

    def done(self) -> None:
        """A node that ends a FOCUS chain is done with the model: release it
        unless the user asked to keep it loaded."""
        if not self.keep_loaded:
            self.release()

    def __repr__(self) -> str:
        return f"ManagedMLLM({self.description}, {'loaded' if self.loaded else 'released'})"


def trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise:
    a released model's activations and buffers would stay in the process's
    memory). A no-op where there is no glibc."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def model_of(mllm: Any) -> Any:
    """The engine adapter behind a FOCUS_MLLM input (a ManagedMLLM, or an
    adapter passed in directly by another pack or a test)."""
    return mllm.get() if isinstance(mllm, ManagedMLLM) else mllm


def estimated_bytes(folder: str, quantization: str = "none") -> int:
    """About how much memory the weights of ``folder`` take once loaded: its
    safetensors files (16-bit for the known models), shrunk by quantization."""
    import os

    files = 0
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            files += os.path.getsize(os.path.join(folder, name))
    return int(files * {"8bit": 0.55, "4bit": 0.3}.get(quantization, 1.0))


def parameter_bytes(module: Any) -> int:
    """Bytes of a torch module's parameters and buffers (quantized ones as stored)."""
    total = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        total += tensor.nelement() * tensor.element_size()
    return total


class FocusModelPatcher:
    """The face ``comfy.model_management`` sees of a FOCUS model: the subset of
    ComfyUI's ModelPatcher interface that its LoadedModel, ``load_models_gpu``
    and ``free_memory`` call. The model is either all loaded or released:
    a partial unload frees nothing (returns 0), so ComfyUI goes on to
    ``detach``, which releases it whole."""

    parent = None

    def __init__(self, owner: ManagedMLLM) -> None:
        import torch

        mllm = owner._mllm
        self.owner = owner
        self.model: Any = mllm.model
        """The torch module ComfyUI watches (weakly); None once released."""
        self.load_device = torch.device(mllm.device)
        self.offload_device = self.load_device
        self.size = parameter_bytes(self.model)
        self._dtype = getattr(self.model, "dtype", None)
        self.clone_base_uuid = uuid.uuid4()
        """Its own: no other patcher is a clone of it (multi-GPU unloading compares these)."""

    def is_dynamic(self) -> bool:
        """Not one of ComfyUI's dynamic-VRAM models: loaded whole, no pinned pages."""
        return False

    def get_nested_additional_models(self) -> list[Any]:
        return []

    def model_size(self) -> int:
        return self.size

    def loaded_size(self) -> int:
        return self.size if self.model is not None else 0

    def current_loaded_device(self) -> Any:
        return self.load_device

    def model_dtype(self) -> Any:
        return self._dtype

    def model_patches_to(self, device: Any) -> None:
        """No patches (LoRA-style weight patches are a diffusion-model thing)."""

    def model_patches_models(self) -> list[Any]:
        return []

    def lowvram_patch_counter(self) -> int:
        return 0

    def is_clone(self, other: Any) -> bool:
        """Itself only: ``load_models_gpu`` re-registers a model in use by
        taking its old entry off (``detach(unpatch_all=False)``) first."""
        return other is self

    def partially_load(self, device: Any, extra_memory: float = 0, force_patch_weights: bool = False) -> int:
        """Already on its device since it was loaded: nothing more to load."""
        return 0

    def partially_unload(self, device: Any, memory_to_free: float = 0) -> int:
        return 0

    def detach(self, unpatch_all: bool = True) -> None:
        """ComfyUI unloads this model (``unpatch_all``): release the weights.
        Without ``unpatch_all`` it is only being re-registered: keep them."""
        if unpatch_all:
            self.owner.release(by_comfy=True)
