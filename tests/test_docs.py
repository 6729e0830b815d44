"""The docs say what the code does: the slow tests docs/testing.md lists are
the tests marked slow, file by file, and their number."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "eleven": 11, "twelve": 12}


def slow_tests() -> dict[str, int]:
    """Test functions marked ``@pytest.mark.slow``, per test file."""
    counts: dict[str, int] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any("mark.slow" in ast.unparse(d) for d in node.decorator_list):
                counts[path.name] = counts.get(path.name, 0) + 1
    return counts


def test_the_slow_tests_listed_are_the_slow_tests():
    text = (ROOT / "docs" / "testing.md").read_text()
    listed = {name: NUMBERS[count] for name, count in re.findall(r"^\| `(test_\w+\.py)`, (\w+) tests? \|", text,
                                                                 flags=re.MULTILINE)}
    actual = slow_tests()
    assert listed == actual
    total = sum(actual.values())
    word = next(w for w, n in NUMBERS.items() if n == total)
    assert f"leaves out the {word} slow end-to-end" in text
    assert f"leaves\nout the {word} slow end-to-end" in (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_its_commands_stand_alone():
    """Issue 33, item 8: the README stays within 300 lines, names no
    placeholder to clone, and its Python snippet defines what it uses."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert "<this repository>" not in readme
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
                   if "FocusPipeline(" in block)
    assert snippet.index("image = ") < snippet.index(".run(image")
    assert "models/LLM/focus-demo" in readme  # how to try the nodes with the embedded model
