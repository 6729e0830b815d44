"""Model adapters: one per family, behind the ``MLLM`` interface."""

from .base import EXISTENCE_PROMPT, MLLM, FamilySettings, VisualView
from .loader import FAMILY_ADAPTERS, load_mllm, supported_families

__all__ = ["EXISTENCE_PROMPT", "FAMILY_ADAPTERS", "FamilySettings", "MLLM", "VisualView", "load_mllm",
           "supported_families"]
