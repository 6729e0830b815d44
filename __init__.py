"""ComfyUI-FOCUS: ComfyUI entry point.

ComfyUI imports this package from ``custom_nodes/``. Importing it loads no
model and touches no GPU: the nodes load models only when they run.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = None

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
