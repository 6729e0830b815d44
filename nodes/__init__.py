"""ComfyUI nodes of the FOCUS pack: thin adapters over ``focus_engine``, one
module per stage. ComfyUI modules are reached only through ``bridge``."""

from . import bridge
from .find import FocusFind
from .helpers import FocusCropROI, FocusDrawROIs, FocusROIsToMask, FocusVQA
from .load_mllm import FocusLoadMLLM
from .stages import FocusAnswer, FocusExtractTargets, FocusProposeROIs, FocusRankROIs, FocusRelevanceMap

bridge.register_model_folder()  # models/LLM; a no-op outside ComfyUI

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "FocusLoadMLLM": FocusLoadMLLM,
    "FocusExtractTargets": FocusExtractTargets,
    "FocusRelevanceMap": FocusRelevanceMap,
    "FocusProposeROIs": FocusProposeROIs,
    "FocusRankROIs": FocusRankROIs,
    "FocusAnswer": FocusAnswer,
    "FocusROIsToMask": FocusROIsToMask,
    "FocusCropROI": FocusCropROI,
    "FocusDrawROIs": FocusDrawROIs,
    "FocusVQA": FocusVQA,
    "FocusFind": FocusFind,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "FocusLoadMLLM": "FOCUS · Load MLLM",
    "FocusExtractTargets": "FOCUS · Extract Targets",
    "FocusRelevanceMap": "FOCUS · Relevance Map",
    "FocusProposeROIs": "FOCUS · Propose ROIs",
    "FocusRankROIs": "FOCUS · Rank ROIs",
    "FocusAnswer": "FOCUS · Answer",
    "FocusROIsToMask": "FOCUS · ROIs to Mask",
    "FocusCropROI": "FOCUS · Crop ROI",
    "FocusDrawROIs": "FOCUS · Draw ROIs",
    "FocusVQA": "FOCUS · VQA (one node)",
    "FocusFind": "FOCUS · Find",
}
