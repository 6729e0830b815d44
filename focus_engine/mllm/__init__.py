"""Model adapters: one per family, behind the ``MLLM`` interface."""

from .base import EXISTENCE_PROMPT, MLLM, Prefill, VisualView
from .loader import FAMILY_ADAPTERS, load_mllm, supported_families

__all__ = ["EXISTENCE_PROMPT", "FAMILY_ADAPTERS", "MLLM", "Prefill", "VisualView", "load_mllm", "supported_families"]
