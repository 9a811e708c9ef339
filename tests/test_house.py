"""The shape of the house (docs/architecture.md): small functions, few loose modules, and the
training loop readable on one screen. The import rules are checked by ``lint-imports``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "asft"


def _functions(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_in_src_is_over_80_lines():
    long = [f"{p.relative_to(SRC)}:{line} {name} ({n} lines)"
            for p in sorted(SRC.rglob("*.py")) for name, line, n in _functions(p) if n > 80]
    assert not long, "split these functions:\n" + "\n".join(long)


@pytest.mark.parametrize("module, name", [
    ("train/loop.py", "train"), ("train/setup.py", "setup"), ("train/step.py", "train_step"),
    ("train/loop.py", "finish"),
])
def test_the_loop_parts_fit_on_one_screen(module, name):
    sizes = {fn: n for fn, _, n in _functions(SRC / module)}
    assert name in sizes, f"{module} has no function {name}"
    assert sizes[name] <= 60, f"{module}:{name} is {sizes[name]} lines"


def test_at_most_five_modules_at_the_top_of_the_package():
    loose = sorted(p.name for p in SRC.glob("*.py"))
    assert len(loose) <= 5, loose


def test_every_package_has_a_docstring_saying_what_it_holds():
    for init in sorted(SRC.rglob("__init__.py")):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"
