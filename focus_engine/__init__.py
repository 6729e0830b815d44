"""FOCUS: training-free visual cropping for fine-grained VQA, from the value
vectors in a multimodal LLM's KV cache. No ComfyUI import anywhere here."""

from .config import FocusConfig
from .cost import Cost
from .errors import FocusConfigError, FocusError, FocusInputError, FocusModelError, UnsupportedModelError
from .grid import GridGeometry, RelevanceMap
from .mllm import MLLM, load_mllm
from .pipeline import FocusPipeline, FocusResult
from .rois import ROI
from .targets import Targets

__version__ = "0.1.0"

__all__ = [
    "Cost", "FocusConfig", "FocusConfigError", "FocusError", "FocusInputError", "FocusModelError",
    "FocusPipeline", "FocusResult", "GridGeometry", "MLLM", "RelevanceMap", "ROI", "Targets",
    "UnsupportedModelError", "load_mllm", "__version__",
]
