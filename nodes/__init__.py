"""ComfyUI nodes of the FOCUS pack (thin adapters over ``focus_engine``).

The six stage nodes and the helpers arrive with the node-pack issue; until
then the pack registers no nodes, so ComfyUI loads it cleanly.
"""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
