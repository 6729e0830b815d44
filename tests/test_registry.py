"""Ready for the Comfy Registry (issue 24): pyproject's [project] and
[tool.comfy] as the registry reads them (docs.comfy.org/registry/specifications;
comfy-cli 1.23's `comfy node validate` parses the same fields and runs ruff's
S102 exec, S307 eval and E702 one-line-statements checks over the pack), the
registry's rules for the code (no eval/exec, no package installs at run time,
no obfuscated code), and the workflows offered in ComfyUI's template browser."""

from __future__ import annotations

import ast
import io
import json
import re
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["__init__.py", "nodes", "focus_engine"]
"""What ComfyUI imports (the pack) and what it imports (the engine)."""
EVERY_PACKAGE = ["__init__.py", "nodes", "focus_engine", "tools", "tests", "benchmarks", "docs"]
"""Everything the registry's scan sees (`comfy node validate` checks the whole folder)."""
TEMPLATE_FOLDERS = ["example_workflows", "example", "examples", "workflow", "workflows"]
"""ComfyUI's app/custom_node_manager.py: a pack's <folder>/*.json are its workflow templates."""
VERSION = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
"""comfy-cli's check of requires-comfyui (each comma-separated part)."""


def pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def python_files(parts: list[str]) -> list[Path]:
    files = []
    for part in parts:
        path = ROOT / part
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def test_project_fields_the_registry_needs():
    project = pyproject()["project"]
    name = project["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*", name)
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and project["license"] == "MIT" and (ROOT / "LICENSE").is_file()


def test_tool_comfy_is_complete_and_honest():
    comfy = pyproject()["tool"]["comfy"]
    assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", comfy["PublisherId"])
    assert comfy["DisplayName"].strip()
    # the icon is in this repository (a path, or the raw URL of one): square, at most 400 px
    icon = comfy["Icon"]
    local = ROOT / (icon.split("/main/", 1)[1] if icon.startswith("https://") else icon)
    assert local.is_file(), icon
    from PIL import Image

    with Image.open(local) as picture:
        assert picture.width == picture.height <= 400 and picture.format in ("PNG", "JPEG", "GIF")
    # the lowest ComfyUI the pack was run on, as the docs say
    requires = comfy["requires-comfyui"]
    assert all(VERSION.match(part.strip()) for part in requires.split(","))
    lowest = re.fullmatch(r">=(\d+\.\d+\.\d+)", requires).group(1)
    assert f"ComfyUI ({lowest}, CPU)" in (ROOT / "docs" / "comfyui.md").read_text()
    assert all((ROOT / path).exists() for path in comfy["includes"])


def registry_problems(source: str, where: str) -> list[str]:
    """ruff S102 / S307 / E702, the registry's checks: exec(), eval(), ';'."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
            problems.append(f"{where}:{node.lineno}: {node.func.id}()")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.OP and token.string == ";":
            problems.append(f"{where}:{token.start[0]}: ';' joins statements")
    return problems


BANNED_MODULES = {"subprocess", "pip", "ensurepip", "marshal", "pickle"}
BANNED_CALLS = {"os.system", "os.popen", "os.execv", "os.execvp", "base64.b64decode", "zlib.decompress",
                "codecs.decode", "importlib.import_module", "__import__", "compile"}


def hidden_work(source: str, where: Path) -> list[str]:
    """Package installs, shell commands, code built at run time and encoded
    payloads. Allowed: the engine's lazy imports of its own modules
    (relative names), and base64 decoding of dataset images in the
    benchmark readers."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"{where}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            relative_import = called == "importlib.import_module" and ast.unparse(node.args[0])[:3] in ("f'.", "'.")
            dataset_images = where.parts[:2] == ("focus_engine", "bench") and called == "base64.b64decode"
            if called in BANNED_CALLS and not (relative_import or dataset_images):
                problems.append(f"{where}:{node.lineno}: calls {called}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            if len(text) > 200 and re.fullmatch(r"[A-Za-z0-9+/=]+", text):
                problems.append(f"{where}:{node.lineno}: an encoded-looking literal of {len(text)} characters")
    return problems


def test_no_eval_exec_or_one_line_statements():
    problems = []
    for path in python_files(EVERY_PACKAGE):
        problems += registry_problems(path.read_text(), str(path.relative_to(ROOT)))
    assert problems == []


def test_the_pack_installs_nothing_and_hides_nothing():
    """Nothing of the kind in the code ComfyUI imports (nodes and engine)."""
    problems = []
    for path in python_files(SHIPPED):
        problems += hidden_work(path.read_text(), path.relative_to(ROOT))
    assert problems == []
    requirements = (ROOT / "requirements.txt").read_text()
    assert "torch" not in re.sub(r"#.*", "", requirements).split()  # ComfyUI's own torch is used


def test_the_checks_catch_what_they_look_for():
    sample = ("import subprocess\nsubprocess.run(['pip', 'install', 'x']); eval('1')\nexec(compile('', '', 'exec'))\n"
              "import base64\nexec(base64.b64decode('" + "QUFB" * 80 + "'))\nimportlib.import_module('os')\n")
    found = registry_problems(sample, "x.py")
    assert any("eval()" in p for p in found) and any("exec()" in p for p in found) and any("';'" in p for p in found)
    hidden = " ".join(hidden_work(sample, Path("nodes/x.py")))
    for what in ("imports subprocess", "calls compile", "calls base64.b64decode", "encoded-looking",
                 "calls importlib.import_module"):
        assert what in hidden, what


def test_the_workflows_are_in_the_template_browser():
    """ComfyUI lists <pack>/workflows/*.json (its example-workflow folder
    names) as the pack's templates: each is a UI workflow the frontend loads;
    the API twins sit one folder down, out of the list."""
    folders = [name for name in TEMPLATE_FOLDERS if (ROOT / name).is_dir()]
    assert folders == ["workflows"]
    templates = sorted((ROOT / "workflows").glob("*.json"))
    assert len(templates) == 7
    for path in templates:
        workflow = json.loads(path.read_text())
        assert isinstance(workflow.get("nodes"), list) and isinstance(workflow.get("links"), list), path.name
    assert sorted(p.name for p in (ROOT / "workflows" / "api").glob("*.json")) == [p.name for p in templates]


def test_comfy_cli_reads_the_metadata():
    """With comfy-cli installed (pip install comfy-cli), its own parser reads
    the fields as the registry will (offline)."""
    parser = pytest.importorskip("comfy_cli.registry.config_parser")
    config = parser.extract_node_configuration(str(ROOT / "pyproject.toml"))
    comfy = pyproject()["tool"]["comfy"]
    assert config.tool_comfy.publisher_id == comfy["PublisherId"] and config.tool_comfy.icon == comfy["Icon"]
    assert config.project.supported_comfyui_version == comfy["requires-comfyui"]
    assert config.project.version == pyproject()["project"]["version"]


# ---------------------------------------------------------------- what a release ships (issue 31, §3)

USER_FILES = {".comfyignore", "__init__.py", "LICENSE", "README.md", "pyproject.toml", "requirements.txt",
              "docs/icon.png"}
USER_FOLDERS = ("nodes/", "focus_engine/", "workflows/")


def test_a_release_ships_what_a_comfyui_user_needs_and_nothing_else():
    """``comfy node pack`` ships the git-tracked files less .comfyignore's:
    the pack, the engine with its demo model, the workflows, README,
    LICENSE, pyproject.toml, requirements.txt and the icon; no tests, tools,
    benchmarks or other docs (subprocess calls, a DevTools websocket,
    environment reads: all flagged by the registry's scan)."""
    from tools.registry_scan import shipped_files, tracked_files

    shipped, tracked = set(shipped_files()), set(tracked_files())
    assert shipped == {p for p in tracked if p in USER_FILES or p.startswith(USER_FOLDERS)}
    assert {"focus_engine/demo_model/model.safetensors", "focus_engine/demo_model/config.json",
            "nodes/__init__.py", "workflows/focus_vqa_one_node.json", "workflows/api/focus_vqa_one_node.json"} <= shipped
    assert not any(p.startswith(("tests/", "tools/", "benchmarks/", ".ci/")) for p in shipped)
    assert pyproject()["tool"]["comfy"]["Icon"] in shipped


def test_the_release_alone_runs_focus_in_the_nodes(tmp_path):
    """The release unpacked on its own (no tests/ or tools/ beside it),
    imported as ComfyUI imports a pack (the package named by its folder's
    path): eleven nodes, every engine module imports, and Load MLLM plus FOCUS ·
    VQA answer the demo question on the embedded demo model."""
    import shutil
    import subprocess

    from tools.registry_scan import shipped_files

    release = tmp_path / "custom_nodes" / "ComfyUI-FOCUS"
    for name in shipped_files():
        (release / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, release / name)
    code = (
        "import importlib, importlib.util, pkgutil, sys\n"
        "import numpy as np, torch\n"
        "name = sys.argv[1]\n"
        "spec = importlib.util.spec_from_file_location(name, name + '/__init__.py', submodule_search_locations=[name])\n"
        "pack = importlib.util.module_from_spec(spec); sys.modules[name] = pack\n"
        "spec.loader.exec_module(pack)\n"
        "engine = importlib.import_module(name + '.focus_engine')\n"
        "modules = [m.name for m in pkgutil.walk_packages(engine.__path__, name + '.focus_engine.')]\n"
        "for module in modules:\n"
        "    importlib.import_module(module)\n"
        "bridge = importlib.import_module(name + '.nodes.bridge')\n"
        "bridge.MODELS_DIR_OUTSIDE_COMFYUI = name + '/focus_engine'\n"
        "nodes = pack.NODE_CLASS_MAPPINGS\n"
        "(mllm,) = nodes['FocusLoadMLLM']().load('demo_model', 'fp32', 'auto', 'cpu', True)\n"
        "item = engine.demo.demo_item()\n"
        "image = torch.from_numpy(np.asarray(item.image.convert('RGB'), np.float32)[None] / 255)\n"
        "answer = nodes['FocusVQA']().run(mllm, image, item.question, 2, '\\n'.join(item.options))[0]\n"
        "print('release:', len(nodes), len(modules), engine.FocusConfig.__name__, repr(answer))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(release)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    _, nodes, modules, config, answer = done.stdout.splitlines()[-1].split(maxsplit=4)
    assert nodes == "11" and int(modules) > 40 and config == "FocusConfig" and answer.strip("'\"")


def test_the_shipped_files_pass_the_registry_scan():
    """Every rule the registry's scanner is reported to apply, over every
    shipped text file, comments included: no finding (tools/registry_scan.py)."""
    from tools.registry_scan import ALLOWED, scan

    assert scan() == []
    assert ALLOWED == {}  # nothing had to stay


@pytest.mark.parametrize("line, rule", [
    ('token = os.environ.get("HF_TOKEN")', "python_environment_manipulation"),
    ('os.environ["CUDA_VISIBLE_DEVICES"] = "0"', "python_environment_manipulation"),
    ("value = os.getenv('X')", "python_environment_manipulation"),
    ("subprocess.run(['git', 'pull'])", "python_command_injection_risk"),
    ("proc = subprocess.Popen(cmd)", "python_command_injection_risk"),
    ("os.system('ls')", "python_command_injection_risk"),
    ("r = requests.get(url)", "python_network_operations"),
    ("socket.create_connection((host, 443))", "python_network_operations"),
    ("urllib.request.urlopen(url)", "python_network_operations"),
    ("model.eval()", "python_dynamic_execution"),
    ("mx.eval(tensor)", "python_dynamic_execution"),
    ("exec(code)", "python_dynamic_execution"),
    ("module = importlib.import_module(name)", "python_bytecode_manipulation"),
    ("code = compile(source, 'x', 'exec')", "python_bytecode_manipulation"),
    ('__import__("sys").modules.get("x")', "python_bytecode_manipulation"),
    ("rm -rf /tmp/x", "contains_rm_rf"),
    ("see https://raw.githubusercontent.com/a/b/main/c.png", "contains_blacklisted_url"),
    ("cmd = ['ffmpeg', '-i', path]", "python_url_command_execution"),
    ("db = sqlite3.connect(path)", "python_database_connections"),
    ("A" * 500, "python_minified_code"),
])
def test_the_scan_finds_what_the_registry_flagged(line, rule):
    """Lines quoted from flagged versions' findings, each under its rule."""
    from tools.registry_scan import scan_text

    assert rule in {found for _, found, _ in scan_text(line)}


@pytest.mark.parametrize("line", [
    "model.train(False)", "pattern = re.compile(r'x')", "value = pkgutil.resolve_name('a.b:c')",
    "from huggingface_hub import constants", "get_session().head(constants.ENDPOINT, timeout=3)",
    "evaluation = evaluate(records)", "# the environment's torch", "shutil.copy(a, b)",
])
def test_the_scan_passes_what_the_pack_writes_instead(line):
    from tools.registry_scan import scan_text

    assert scan_text(line) == []
