"""Project-wide rules: lint, format, types, the library/CLI boundary, the published schema."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mealplan_cli.generation.models import plan_json_schema
from scripts.export_schema import TARGET

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",)],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tooling_is_clean(command: tuple[str, ...]) -> None:
    result = run_tool(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_library_never_imports_the_cli_or_rich_or_typer() -> None:
    offenders = []
    for path in (ROOT / "mealplan_cli" / "generation").rglob("*.py"):
        for module in imported_modules(path):
            if module.startswith(("mealplan_cli.cli", "typer", "rich")):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_the_published_schema_is_current() -> None:
    published = json.loads(TARGET.read_text(encoding="utf-8"))
    assert published == plan_json_schema(), (
        "schema/meal-plan.schema.json is stale: run python scripts/export_schema.py"
    )
