"""The tests are sorted by kind, and share code only through ``tests/helpers`` and
``tests/fakes``: a test module imported by another ties the two files together (moving or
deleting one breaks the other) and hides the shared code among tests."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
KINDS = ("unit", "integration", "process")


def all_test_modules() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (imports inside functions count too)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_test_module(module: str) -> bool:
    return any(part.startswith("test_") for part in module.split("."))


def test_no_test_module_imports_another() -> None:
    offenders = [
        f"{path.relative_to(TESTS)} imports {module}"
        for path in all_test_modules()
        for module in imported_modules(path)
        if is_test_module(module)
    ]
    assert offenders == [], "move shared code to tests/helpers/"


def test_every_test_module_sits_in_a_folder_of_its_kind() -> None:
    misplaced = [
        str(path.relative_to(TESTS))
        for path in all_test_modules()
        if path.relative_to(TESTS).parts[0] not in KINDS
    ]
    assert misplaced == [], f"test modules belong in tests/{{{','.join(KINDS)}}}/"
