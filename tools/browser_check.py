"""The shipped workflows in ComfyUI's real frontend, in headless Chromium.

Drives a Chromium (the Debian ``chromium`` package, or any Chrome found on
PATH) through its DevTools protocol with aiohttp's websocket client (no
browser download at run time). Against a running ComfyUI server it loads
each UI workflow the way drag-and-drop does (``app.loadGraphData``) in either
renderer: the classic canvas one, where a node's box (title bar included)
comes from ``app.graph``, or the Vue one ("Nodes 2.0", the
``Comfy.VueNodes.Enabled`` setting), where nodes are DOM elements and their
boxes are measured from the drawn elements. For each node it reports the box,
whether its type is known to the server, and the widgets shown; for the page,
its errors (exceptions, error dialogs). It can also queue the loaded workflow,
report which previews show a result, and save a screenshot. Used by
``tests/test_workflows_browser.py``;

    python -m tools.browser_check http://127.0.0.1:8188 [--vue]

checks every workflow in ``workflows/`` against a server already running
(``--json``: print what was drawn instead; ``--measure``: the height each
node type's content needs, with every node loaded at its smallest;
``--disable-extension=NAME``: with that frontend extension turned off,
``--all-extensions``: with none off;
``--workflow=PATH``: that workflow instead; ``--run``: the ``DEMO_RUNNABLE``
ones also run on the demo model);
``... URL --screenshot out.png`` runs ``focus_vqa_one_node`` on the demo model
(``DEMO_RUN``) and saves the picture of docs/comfyui_demo_run.png. Run it
with a Python that has aiohttp (ComfyUI's).
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
CHECK_SIZE = (2600, 1800)
"""The page size for the checks: every shipped workflow fits at full zoom."""
VUE_SETTING = "Comfy.VueNodes.Enabled"
"""The frontend's Nodes 2.0 switch (1.27: experimental; 1.41 and later: on by default on new Desktop/Cloud installs)."""
DISABLED_EXTENSIONS_SETTING = "Comfy.Extension.Disabled"
IMPACT_TOGGLE_EXTENSION = "Comfy.impact.comboBoolMigration"
"""Impact Pack 7.x's extension that makes every toggle's value undeletable: any
workflow with a toggle widget then fails to load in frontends 1.19.5 and later."""
BOXES_JS = """(() => {
  const canvas = app.canvas.canvas.getBoundingClientRect(), ds = app.canvas.ds;
  const elements = new Map(Array.from(document.querySelectorAll('.lg-node[data-node-id]'))
                              .map(el => [String(el.dataset.nodeId), el]));
  const known = t => !!(LiteGraph.registered_node_types && LiteGraph.registered_node_types[t]);
  return app.graph._nodes.map(n => {
    const el = elements.get(String(n.id));
    let box, widgets;
    if (el) {  // Vue renderer: the drawn element, in graph units
      const r = el.getBoundingClientRect();
      box = [(r.left - canvas.left) / ds.scale - ds.offset[0], (r.top - canvas.top) / ds.scale - ds.offset[1],
             r.width / ds.scale, r.height / ds.scale];
      widgets = Array.from(el.querySelectorAll('[data-widget-name]')).map(w => w.dataset.widgetName);
    } else {
      box = n.getBounding ? Array.from(n.getBounding()) : [n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30];
      widgets = (n.widgets || []).filter(w => !w.hidden && w.type !== 'hidden').map(w => w.name);
    }
    return {id: n.id, type: n.type, title: n.title || n.type || String(n.id), box: box, size: Array.from(n.size),
            collapsed: !!(n.flags && n.flags.collapsed), known: known(n.type), widgets: widgets,
            renderer: el ? 'vue' : 'classic'};
  });
})()"""
NEWER_BACKEND_ERRORS = ("Failed to fetch jobs: 404",)
"""Errors a frontend newer than the server logs on its own: 1.58 asks for the
jobs API (/api/jobs), which ComfyUI 0.3.64 does not serve; queueing and
results work without it."""


def unexplained(errors: list[str]) -> list[str]:
    """The page errors not explained by ``NEWER_BACKEND_ERRORS``."""
    return [e for e in errors if not any(known in e for known in NEWER_BACKEND_ERRORS)]


DIALOGS_JS = """(() => Array.from(document.querySelectorAll('.p-dialog'))
  .filter(d => d.getClientRects().length > 0).map(d => d.innerText.trim().slice(0, 400)))()"""
PREVIEWS_JS = """(() => {
  const elements = new Map(Array.from(document.querySelectorAll('.lg-node[data-node-id]'))
                              .map(el => [String(el.dataset.nodeId), el]));
  const out = {};
  for (const n of app.graph._nodes) {
    const el = elements.get(String(n.id));
    if (n.type === 'PreviewAny') {
      const text = el ? Array.from(el.querySelectorAll('textarea')).map(t => t.value).join('')
                      : ((n.widgets || []).map(w => w.value).filter(v => typeof v === 'string').join(''));
      out[n.id] = {type: n.type, shown: text.trim().length > 0, text: text.slice(0, 200)};
    } else if (n.type === 'PreviewImage' || n.type === 'SaveImage') {
      const shown = el ? Array.from(el.querySelectorAll('img')).some(i => i.complete && i.naturalWidth > 0)
                       : !!(n.imgs && n.imgs.length && n.imgs[0].naturalWidth > 0);
      out[n.id] = {type: n.type, shown: shown};
    }
  }
  return out;
})()"""


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
        self.errors: list[str] = []
        """The page's uncaught exceptions and console errors, in order."""

    def _note(self, message: dict[str, Any]) -> None:
        params = message.get("params", {})
        if message.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description") or details.get("text"))[:500])
        elif message.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))[:500])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        await self.socket.send_json({"id": message_id, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=120)
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self._note(message)

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
            try:
                value = await self.evaluate(f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()")
            except RuntimeError as error:  # the page is (re)loading: its old context is gone
                if "navigated or closed" not in str(error) and "context" not in str(error):
                    raise
                value = None
            if value:
                return value
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the page never had {expression}")

    async def set_setting(self, setting: str, value: Any) -> None:
        """A frontend setting, stored on the server as the settings dialog stores it."""
        await self.evaluate(f"Promise.resolve(app.extensionManager.setting.set({json.dumps(setting)}, "
                            f"{json.dumps(value)})).then(() => 1)")

    async def open_comfyui(self, url: str, vue: bool = False, disabled_extensions: list[str] | None = None) -> None:
        """Open the frontend in the classic or the Vue renderer; with
        ``disabled_extensions`` (frontend extension names) it is opened again
        without them, as after turning them off in Settings > Extensions."""
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        await self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                        deviceScaleFactor=1, mobile=False)
        await self.call("Page.navigate", url=url)
        await self._settle()
        if disabled_extensions is not None:
            await self.set_setting(DISABLED_EXTENSIONS_SETTING, disabled_extensions)
            await self.call("Page.reload")
            await asyncio.sleep(2)  # the old page is gone before the new one is asked anything
            await self._settle()
        await self.set_setting(VUE_SETTING, vue)
        for setting in ("Comfy.Minimap.Visible", "Comfy.Graph.CanvasInfo"):  # a clean picture
            await self.evaluate(f"Promise.resolve(app.extensionManager.setting.set('{setting}', false)).then(() => 1)"
                                ".catch(() => 0)")
        await asyncio.sleep(1)
        self.errors.clear()  # what the test workflows cause counts, not start-up noise

    async def _settle(self) -> None:
        await self.wait_for("window.app && app.graph && app.canvas && document.readyState === 'complete'")
        await asyncio.sleep(2)  # the frontend's first-run dialogs and extensions settle
        await self.close_dialogs()

    async def close_dialogs(self) -> list[str]:
        """The texts of the dialogs open now; then they are closed."""
        texts = await self.evaluate(DIALOGS_JS)
        await self.evaluate("document.querySelectorAll('.p-dialog-close-button').forEach(b => b.click()) || 1")
        return texts

    async def load(self, workflow: dict[str, Any]) -> list[dict[str, Any]]:
        """Load a UI workflow as drag-and-drop does; every node as drawn (``BOXES_JS``)."""
        await self.evaluate(f"app.loadGraphData({json.dumps(workflow)}).then(() => 1)")
        await asyncio.sleep(1)  # a few frames: nodes are drawn and sized
        await self.show_everything()
        return await self.evaluate(BOXES_JS)

    async def show_everything(self) -> None:
        """Every node in view, at full size where the page is large enough
        (``CHECK_SIZE``): the Vue renderer draws only the nodes in view, and
        zoomed out it draws them in less detail, at another size."""
        await self.evaluate("""(() => {
          const ns = app.graph._nodes, c = app.canvas.canvas.getBoundingClientRect();
          const x0 = Math.min(...ns.map(n => n.pos[0])), y0 = Math.min(...ns.map(n => n.pos[1])) - 40;
          const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
          const scale = Math.min(1, (c.width - 80) / (x1 - x0), (c.height - 200) / (y1 - y0 + 200));
          app.canvas.ds.scale = scale; app.canvas.ds.offset = [40 / scale - x0, 80 / scale - y0];
          app.graph.setDirtyCanvas(true, true); return 1; })()""")
        await asyncio.sleep(1.5)

    async def previews(self) -> dict[str, dict[str, Any]]:
        """Per preview node (PreviewImage, SaveImage, PreviewAny): whether it shows a result."""
        return await self.evaluate(PREVIEWS_JS)

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

        # Chromium's helper processes may still write the profile as it exits: a leftover file is no failure
        self.profile = tempfile.TemporaryDirectory(prefix="focus-chromium-", ignore_cleanup_errors=True)
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
            self.process.wait()
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


async def drawn_workflows(url: str, workflows: list[Path], vue: bool = False,
                          disabled_extensions: list[str] | None = None, run: bool = False) -> dict[str, Any]:
    """Each workflow as ComfyUI's frontend at ``url`` draws it: its nodes
    (``BOXES_JS``), the dialogs it opened and the page errors it caused;
    with ``run``, the ``DEMO_RUNNABLE`` ones also after a run on the demo
    model (``run_loaded``, under "after_run"). "frontend": the frontend's version."""
    drawn: dict[str, Any] = {}
    async with Chromium(size=CHECK_SIZE) as page:
        await page.open_comfyui(url, vue=vue, disabled_extensions=disabled_extensions)
        drawn["frontend"] = await page.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || null")
        for path in workflows:
            nodes = await page.load(json.loads(path.read_text()))
            drawn[path.stem] = {"nodes": nodes, "dialogs": await page.close_dialogs(), "errors": list(page.errors)}
            page.errors.clear()
            if run and path.stem in DEMO_RUNNABLE:
                drawn[path.stem]["after_run"] = await run_loaded(page)
                page.errors.clear()
    return drawn


async def run_loaded(page: Page, values: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Queue the workflow on the page (its widgets set to ``values`` first,
    ``DEMO_RUN`` by default), wait for the run; its nodes as drawn after it
    (``BOXES_JS``), which previews show a result, dialogs and page errors."""
    await set_widgets(page, DEMO_RUN if values is None else values)
    await page.queue_and_wait()
    await page.show_everything()
    return {"nodes": await page.evaluate(BOXES_JS), "previews": await page.previews(),
            "dialogs": await page.close_dialogs(), "errors": list(page.errors)}


async def content_heights(url: str, workflows: list[Path], vue: bool,
                          disabled_extensions: list[str] | None = None) -> dict[str, float]:
    """Per node type, the tallest box its content needs: each workflow loaded
    with every node at its smallest (the renderers grow a node to its
    content, never shrink it below its saved size); the workflows that run
    on the demo model alone (``DEMO_RUNNABLE``) also after a run, when the
    previews hold images and text."""
    heights: dict[str, float] = {}

    def note(nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            heights[node["type"]] = max(heights.get(node["type"], 0), round(node["box"][3], 1))

    async with Chromium(size=CHECK_SIZE) as page:
        await page.open_comfyui(url, vue=vue, disabled_extensions=disabled_extensions)
        for path in workflows:
            workflow = json.loads(path.read_text())
            for node in workflow["nodes"]:
                node["size"] = [node["size"][0], 10]
            note(await page.load(workflow))
            if path.stem in DEMO_RUNNABLE:
                note((await run_loaded(page))["nodes"])
    return dict(sorted(heights.items()))


DEMO_RUNNABLE = ("focus_find_edit", "focus_roi_edit", "focus_vqa_one_node", "focus_vqa_step_by_step")
"""The workflows that run on the demo model alone: FOCUS and core image nodes,
no checkpoint, no other pack (tests/test_workflows_browser.py checks which)."""
DEMO_RUN = {
    "FocusLoadMLLM": {"model": "focus-demo"}, "LoadImage": {"image": "focus_demo_scene.png"},
    "PrimitiveStringMultiline": {"value": "Which letter is on the red sign?"}, "FocusVQA": {"options": "T\nM\nK\nA"},
    "FocusAnswer": {"options": "T\nM\nK\nA"}, "FocusFind": {"objects": "red sign"},
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
    vue = "--vue" in sys.argv
    disabled = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--disable-extension=")]
    disabled = disabled or ([] if "--all-extensions" in sys.argv else None)
    if "--screenshot" in sys.argv:
        return screenshot_demo(url, Path(args[1]))
    workflows = [Path(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--workflow=")]
    workflows = workflows or sorted(WORKFLOWS.glob("*.json"))
    if "--measure" in sys.argv:
        print(json.dumps(asyncio.run(content_heights(url, workflows, vue, disabled)), indent=1))
        return 0
    drawn = asyncio.run(drawn_workflows(url, workflows, vue=vue, disabled_extensions=disabled, run="--run" in sys.argv))
    if "--json" in sys.argv:
        print(json.dumps(drawn))
        return 0
    failed = 0
    print(f"frontend {drawn.pop('frontend')}")
    for name, page in drawn.items():
        nodes = page["nodes"]
        problems = [f"OVERLAPS {overlaps(nodes)}"] if overlaps(nodes) else []
        problems += [f"UNKNOWN {n['type']}" for n in nodes if not n["known"]]
        problems += [f"DIALOG {d!r}" for d in page["dialogs"]] + [f"ERROR {e!r}" for e in unexplained(page["errors"])]
        after = page.get("after_run")
        if after:
            problems += [f"AFTER THE RUN: OVERLAPS {overlaps(after['nodes'])}"] if overlaps(after["nodes"]) else []
            problems += [f"AFTER THE RUN: EMPTY {p['type']} #{i}" for i, p in after["previews"].items() if not p["shown"]]
            problems += [f"AFTER THE RUN: DIALOG {x!r}" for x in after["dialogs"]]
            problems += [f"AFTER THE RUN: ERROR {x!r}" for x in unexplained(after["errors"])]
        failed += bool(problems)
        print(f"{name}: {len(nodes)} nodes ({'vue' if vue else 'classic'}), " + ("; ".join(problems) or "clean"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
