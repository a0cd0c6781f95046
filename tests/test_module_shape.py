"""The shape limits of ARCHITECTURE.md: small modules and short functions, so each reads at once.

No module in ``uploader/`` or ``service/`` over 450 lines and no function over 60: a module that
grows past that holds two concepts, and a function past a screen holds two steps.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def shipped_modules() -> list[Path]:
    return sorted(path for package in ("uploader", "service") for path in (ROOT / package).rglob("*.py"))


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function longer than the limit, nested ones included."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_the_scan_sees_the_shipped_tree() -> None:
    assert len(shipped_modules()) > 100


def test_no_module_is_over_the_limit() -> None:
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in shipped_modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_no_function_is_over_the_limit() -> None:
    too_long = {
        f"{path.relative_to(ROOT)}:{name}": lines
        for path in shipped_modules()
        for name, lines in long_functions(path.read_text(encoding="utf-8"))
    }
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


@pytest.mark.parametrize("lines, flagged", [(MAX_FUNCTION_LINES, False), (MAX_FUNCTION_LINES + 1, True)])
def test_the_function_limit_is_exact(lines: int, flagged: bool) -> None:
    body = "".join("    x = 1\n" for _ in range(lines - 1))
    assert bool(long_functions(f"def f():\n{body}")) is flagged
