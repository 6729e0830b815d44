"""The shipped workflows in ComfyUI's real frontend, in headless Chromium.

Drives a Chromium (the Debian ``chromium`` package, or any Chrome found on
PATH) through its DevTools protocol with aiohttp's websocket client (no
browser download at run time). Against a running ComfyUI server it loads
each UI workflow the way drag-and-drop does (``app.loadGraphData``), reads
every node's drawn bounding box (title bar included) from ``app.graph`` and
reports the pairs that overlap; it can also queue the loaded workflow and
save a screenshot. Used by ``tests/test_workflows_browser.py``;

    python -m tools.browser_check http://127.0.0.1:8188

checks every workflow in ``workflows/`` against a server already running
(``--json``: print the boxes instead); ``... URL --screenshot out.png`` runs
``focus_vqa_one_node`` on the demo model (``DEMO_RUN``) and saves the picture of
docs/comfyui_demo_run.png. Run it with a Python that has aiohttp (ComfyUI's).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.workflow_check import WORKFLOWS

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BOXES_JS = """(() => app.graph._nodes.map(n => {
  const b = n.getBounding ? Array.from(n.getBounding()) : [n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30];
  return {id: n.id, type: n.type, title: n.title || n.type || String(n.id), box: b, size: Array.from(n.size),
          collapsed: !!(n.flags && n.flags.collapsed)};
}))()"""


def find_chromium() -> str | None:
    """The first Chromium/Chrome binary on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def overlaps(boxes: list[dict[str, Any]], margin: float = 0.0) -> list[tuple[str, str]]:
    """Pairs of nodes whose boxes ``[x, y, w, h]`` intersect (by more than ``margin`` px)."""
    found = []
    for a, b in itertools.combinations(boxes, 2):
        ax, ay, aw, ah = a["box"]
        bx, by, bw, bh = b["box"]
        if min(ax + aw, bx + bw) - max(ax, bx) > margin and min(ay + ah, by + bh) - max(ay, by) > margin:
            found.append((f"{a['title']} #{a['id']}", f"{b['title']} #{b['id']}"))
    return found


class Page:
    """One browser tab spoken to over the DevTools websocket."""

    def __init__(self, socket: Any, size: tuple[int, int]) -> None:
        self.socket, self.size = socket, size
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        await self.socket.send_json({"id": message_id, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=120)
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str, timeout: float = 60) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True,
                                 timeout=int(timeout * 1000))
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(f"in the page: {details.get('exception', details)}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 120) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = await self.evaluate(f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()")
            if value:
                return value
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the page never had {expression}")

    async def open_comfyui(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                        deviceScaleFactor=1, mobile=False)
        await self.call("Page.navigate", url=url)
        await self.wait_for("window.app && app.graph && app.canvas && document.readyState === 'complete'")
        await asyncio.sleep(2)  # the frontend's first-run dialogs and extensions settle
        await self.evaluate("document.querySelectorAll('.p-dialog-close-button').forEach(b => b.click()) || 1")
        for setting in ("Comfy.Minimap.Visible", "Comfy.Graph.CanvasInfo"):  # a clean picture
            await self.evaluate(f"Promise.resolve(app.extensionManager.setting.set('{setting}', false)).then(() => 1)"
                                ".catch(() => 0)")

    async def load(self, workflow: dict[str, Any]) -> list[dict[str, Any]]:
        """Load a UI workflow as drag-and-drop does; every node's drawn box."""
        await self.evaluate(f"app.loadGraphData({json.dumps(workflow)}).then(() => 1)")
        await asyncio.sleep(1)  # a few frames: nodes are drawn and sized
        return await self.evaluate(BOXES_JS)

    async def queue_and_wait(self, timeout: float = 600) -> None:
        """Queue the loaded workflow and wait until the server's queue is empty."""
        await self.evaluate("app.queuePrompt(0, 1).then(() => 1)")
        await asyncio.sleep(2)
        await self.wait_for("fetch('/queue').then(r => r.json()).then(q => "
                            "q.queue_running.length + q.queue_pending.length === 0)", timeout)
        await asyncio.sleep(3)  # the previews arrive over the websocket and are drawn

    async def screenshot(self, path: Path, clip: tuple[int, int, int, int] | None = None) -> None:
        """A PNG of the page (or of ``clip``: x, y, width, height in page pixels)."""
        options = {"clip": dict(zip(("x", "y", "width", "height"), clip), scale=1)} if clip else {}
        shot = await self.call("Page.captureScreenshot", format="png", **options)
        path.write_bytes(base64.b64decode(shot["data"]))


class Chromium:
    """A headless Chromium with one page; ``async with Chromium() as page``."""

    def __init__(self, binary: str | None = None, size: tuple[int, int] = (1600, 1000)) -> None:
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise FileNotFoundError(f"no Chromium on PATH (looked for {', '.join(BROWSERS)})")
        self.size = size

    async def __aenter__(self) -> Page:
        import aiohttp

        self.profile = tempfile.TemporaryDirectory(prefix="focus-chromium-")
        self.process = subprocess.Popen(
            [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={self.profile.name}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{self.binary} did not start (exit {self.process.poll()})")
            await asyncio.sleep(0.2)
        port = port_file.read_text().split()[0]
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        self.socket = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        return Page(self.socket, self.size)

    async def __aexit__(self, *exc: Any) -> None:
        await self.socket.close()
        await self.session.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.profile.cleanup()


async def set_widgets(page: Page, values: dict[str, dict[str, Any]]) -> None:
    """Set widget values on the loaded graph: ``{node type: {widget: value}}``."""
    await page.evaluate(f"""(() => {{ const values = {json.dumps(values)};
      for (const n of app.graph._nodes) for (const [name, v] of Object.entries(values[n.type] || {{}})) {{
        const w = n.widgets.find(w => w.name === name); w.value = v; if (w.callback) w.callback(v); }}
      app.graph.setDirtyCanvas(true, true); return 1; }})()""")


async def run_and_screenshot(url: str, workflow: Path, out: Path, values: dict[str, dict[str, Any]],
                             view: tuple[float, float, float]) -> dict[str, Any]:
    """Load ``workflow``, set its widgets, queue it, wait for the run and save a
    screenshot of the canvas at ``view`` (scale, x offset, y offset); the
    drawn boxes after the run and the texts the previews show."""
    async with Chromium() as page:
        await page.open_comfyui(url)
        await page.load(json.loads(workflow.read_text()))
        await set_widgets(page, values)
        await page.queue_and_wait()
        scale, x, y = view
        await page.evaluate(f"(() => {{ app.canvas.ds.scale = {scale}; app.canvas.ds.offset = [{x}, {y}]; "
                            "app.graph.setDirtyCanvas(true, true); return 1; })()")
        await asyncio.sleep(2)
        boxes = await page.evaluate(BOXES_JS)
        left, top = await page.evaluate("(() => { const r = app.canvas.canvas.getBoundingClientRect(); "
                                        "return [r.left, r.top]; })()")
        x0 = min(b["box"][0] for b in boxes)
        y0 = min(b["box"][1] for b in boxes)
        x1 = max(b["box"][0] + b["box"][2] for b in boxes)
        y1 = max(b["box"][1] + b["box"][3] for b in boxes)
        pad = 12
        badge = 20  # the node's source badge ("FOCUS") drawn above its title bar
        clip = (max(0, int(left + (x0 + x) * scale) - pad), max(0, int(top + (y0 + y) * scale) - pad - badge),
                int((x1 - x0) * scale) + 2 * pad, int((y1 - y0) * scale) + 2 * pad + badge)
        await page.screenshot(out, clip)
        texts = await page.evaluate("app.graph._nodes.filter(n => n.type === 'PreviewAny')"
                                    ".map(n => [n.title, n.widgets[0] && n.widgets[0].value])")
        return {"boxes": boxes, "texts": texts}


async def drawn_boxes(url: str, workflows: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Each workflow's node boxes as ComfyUI's frontend at ``url`` draws them."""
    boxes = {}
    async with Chromium() as page:
        await page.open_comfyui(url)
        for path in workflows:
            boxes[path.stem] = await page.load(json.loads(path.read_text()))
    return boxes


DEMO_RUN = {
    "FocusLoadMLLM": {"model": "focus-demo"}, "LoadImage": {"image": "focus_demo_scene.png"},
    "PrimitiveStringMultiline": {"value": "Which letter is on the red sign?"}, "FocusVQA": {"options": "T\nM\nK\nA"},
}
"""The README's picture: ``focus demo``'s question (world seed 2026, answer A) on
the embedded demo model, copied to ``models/LLM/focus-demo``, and its scene saved
as ``input/focus_demo_scene.png`` (``focus_engine.demo.demo_item().image``)."""


def screenshot_demo(url: str, out: Path) -> int:
    result = asyncio.run(run_and_screenshot(url, WORKFLOWS / "focus_vqa_one_node.json", out, DEMO_RUN,
                                            (0.75, 20, 80)))
    answer = dict(result["texts"]).get("Answer")
    print(f"answer: {answer!r}; overlaps after the run: {overlaps(result['boxes']) or 'none'}; wrote {out}")
    return 0 if answer and answer.split()[-1] == "A" and not overlaps(result["boxes"]) else 1


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    url = args[0] if args else "http://127.0.0.1:8188"
    if "--screenshot" in sys.argv:
        return screenshot_demo(url, Path(args[1]))
    boxes = asyncio.run(drawn_boxes(url, sorted(WORKFLOWS.glob("*.json"))))
    if "--json" in sys.argv:
        print(json.dumps(boxes))
        return 0
    failed = 0
    for name, nodes in boxes.items():
        pairs = overlaps(nodes)
        failed += bool(pairs)
        print(f"{name}: {len(nodes)} nodes, " + (f"OVERLAPS {pairs}" if pairs else "no overlaps"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
