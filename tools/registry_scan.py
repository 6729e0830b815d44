"""What a release ships, scanned the way the Comfy Registry scans it.

The registry runs a string scanner over every published file (code, comments,
docs and data alike); one finding, even an informational one, flags the
version, and a flagged version is not served as the latest. Its rules are not
published. ``RULES`` restates, as regular expressions, the rule names and the
strings publishers quote from their flagged versions' findings (the
registry's ``issue_type``, ``matched_patterns`` and ``line_snippet``, threads of
Comfy-Org/registry-backend and ComfyUI-Manager, 2025-2026), so a release is
checked before it is published:

    python -m tools.registry_scan          # every hit in the shipped files
    python -m tools.registry_scan --files  # the files a release ships

``shipped_files`` follows comfy-cli's ``comfy node pack``: the git-tracked
files, less what ``.comfyignore`` matches (gitignore syntax), plus
``[tool.comfy] includes``. Binary files (the demo model's weights) are listed
but not scanned as text.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RULES: dict[str, list[str]] = {
    # environment reads and writes ($env_read1-3, $env_mod*; also bare environ[ / getenv()
    "python_environment_manipulation": [
        r"\benviron\s*\[", r"\benviron\.(get|pop|setdefault|update|clear)\s*\(", r"\b(os\.)?(getenv|putenv|unsetenv)\s*\(",
    ],
    # HTTP clients and sockets ($http*, $socket*); it fires on JavaScript's fn.bind and sqlite3.connect too
    "python_network_operations": [
        r"\brequests\.(get|post|put|delete|head|request|Session)\b", r"\burlopen\s*\(", r"\baiohttp\.ClientSession",
        r"\bsocket\.socket\s*\(", r"\.create_connection\s*\(", r"\.connect\s*\(", r"\.bind\s*\(",
        r"\.sendall\s*\(", r"\.send\s*\(", r"\.recv\s*\(", r"\bhttpx\.", r"\burllib3\b",
    ],
    "python_database_connections": [r"\bsqlite3\.connect\s*\("],
    # subprocess calls ($subprocess_run_direct, $subprocess_popen_direct) and shells
    "python_command_injection_risk": [
        r"\bsubprocess\.(run|Popen|call|check_call|check_output|getoutput|getstatusoutput)\s*\(",
        r"\bos\.(system|popen|exec[lv]p?e?|spawn[lv]p?e?)\s*\(",
    ],
    # command lists and media tools ($media_list_assign_indirect, $media_cmd_string_presence)
    "python_url_command_execution": [r"\bcmd\s*=\s*\[", r"\bffmpeg\b", r"\bffprobe\b"],
    # exec/eval, even as a method (mx.eval( was flagged): model.eval() is written model.train(False)
    "python_dynamic_execution": [r"\bexec\s*\(", r"\beval\s*\("],
    # compile()/import_module/__import__/sys.modules ($compile_direct, $compile_exec_direct)
    "python_bytecode_manipulation": [
        r"(?<![\w.])compile\s*\(", r"\bimport_module\s*\(", r"\b__import__\s*\(", r"\bsys\.modules\b",
        r"\bmarshal\b", r"\bpickle\.loads?\s*\(",
    ],
    "contains_rm_rf": [r"\brm\s+-[a-zA-Z]*r[a-zA-Z]*f", r"\brm\s+-[a-zA-Z]*f[a-zA-Z]*r", r"\bshutil\.rmtree\s*\("],
    "contains_blacklisted_url": [
        r"raw\.githubusercontent\.com", r"drive\.google\.com", r"pastebin\.com", r"mega\.nz", r"discord(app)?\.com",
        r"ngrok\.io", r"transfer\.sh", r"gofile\.io", r"file\.io\b", r"0x0\.st", r"api\.ipify\.org",
    ],
    "windows_process_manipulation": [r"\bkernel32\b", r"\bctypes\.windll\b"],
    "imports_cryptography_py": [r"\bimport\s+cryptography\b", r"\bfrom\s+cryptography\b"],
    "prohibited-string": [r"auth_token_comfy_org"],
    "python_sensitive_file_access": [r"\.ssh/", r"id_rsa", r"/etc/passwd", r"\.aws/credentials"],
    # downloads_and_executes: a package install or a fetched script run at run time
    "downloads_and_executes": [r"\bpip\s+install\b.*(subprocess|os\.system)", r"\bensurepip\b", r"curl\s+[^|]*\|\s*(ba)?sh"],
    # long encoded or minified lines ($python_minified_code, base85 payloads)
    "python_minified_code": [r"[A-Za-z0-9+/=]{400,}"],
}
"""rule name -> patterns; a line matching any pattern is a finding of that rule."""

ALLOWED: dict[tuple[str, str], str] = {}
"""(file, rule) -> why that finding must stay. Empty: the shipped files have none."""


def tracked_files() -> list[str]:
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return sorted(p for p in done.stdout.decode().split("\0") if p)


def ignored_by_comfyignore(paths: list[str]) -> set[str]:
    """The paths ``.comfyignore`` matches, by git's own gitignore matching
    (comfy-cli reads the same file with pathspec's gitwildmatch)."""
    ignore = ROOT / ".comfyignore"
    if not ignore.is_file():
        return set()
    done = subprocess.run(["git", "ls-files", "-z", "--cached", "--ignored", f"--exclude-from={ignore}"],
                          cwd=ROOT, capture_output=True, check=True)
    return {p for p in done.stdout.decode().split("\0") if p} & set(paths)


def comfy_includes() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[tool\.comfy\]$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = re.search(r"^includes\s*=\s*\[(.*?)\]", section.group(1), re.M | re.S) if section else None
    return re.findall(r'"([^"]+)"', found.group(1)) if found else []


def shipped_files() -> list[str]:
    """The files ``comfy node pack`` puts in the release archive."""
    tracked = tracked_files()
    kept = set(tracked) - ignored_by_comfyignore(tracked)
    for include in comfy_includes():
        path = ROOT / include
        kept |= {str(p.relative_to(ROOT)) for p in path.rglob("*") if p.is_file()} if path.is_dir() else {include}
    return sorted(kept)


def is_binary(path: Path) -> bool:
    with open(path, "rb") as handle:
        return b"\0" in handle.read(8192)


def scan_text(text: str) -> list[tuple[int, str, str]]:
    """(line number, rule, line) for every line that matches a rule."""
    compiled = {rule: re.compile("|".join(f"(?:{p})" for p in patterns)) for rule, patterns in RULES.items()}
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        for rule, pattern in compiled.items():
            if pattern.search(line):
                hits.append((number, rule, line.strip()[:160]))
    return hits


def scan(files: list[str] | None = None) -> list[tuple[str, int, str, str]]:
    """Every finding in the shipped text files: (file, line, rule, line text)."""
    found = []
    for name in shipped_files() if files is None else files:
        path = ROOT / name
        if is_binary(path):
            continue
        for number, rule, line in scan_text(path.read_text(encoding="utf-8", errors="replace")):
            if (name, rule) not in ALLOWED:
                found.append((name, number, rule, line))
    return found


def main() -> int:
    if "--files" in sys.argv:
        print("\n".join(shipped_files()))
        return 0
    hits = scan()
    for name, number, rule, line in hits:
        print(f"{name}:{number}: {rule}: {line}")
    print(f"{len(shipped_files())} files ship; {len(hits)} findings")
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
