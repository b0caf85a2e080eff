"""Project-wide rules: lint, format, types, the library/CLI boundary, the published schema."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mealplan_cli.mealplans.generation.models import plan_json_schema
from scripts.export_schema import TARGET

ROOT = Path(__file__).resolve().parents[2]


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


PACKAGE = ROOT / "mealplan_cli"

UI = ("typer", "rich")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # The layers, bottom up: what each part of the package must never import. A module may
    # match several prefixes (a folder's rule and its own); it keeps every one of them.
    "mealplan_cli/ops/errors.py": ("mealplan_cli.", *UI, "pydantic"),
    "mealplan_cli/ops/redact.py": ("mealplan_cli.", *UI),
    "mealplan_cli/ops/retry_policies.py": ("mealplan_cli.", *UI),
    "mealplan_cli/core/signals.py": ("mealplan_cli.", *UI),
    "mealplan_cli/settings/": (
        "mealplan_cli.cli",
        "mealplan_cli.core",
        "mealplan_cli.runtime",
        *UI,
    ),
    "mealplan_cli/settings/config.py": ("pydantic",),
    "mealplan_cli/settings/values.py": ("mealplan_cli.settings.config", "pydantic"),
    "mealplan_cli/settings/connection_strings.py": ("mealplan_cli.", "psycopg"),
    # The generic core knows no meal plan.
    "mealplan_cli/core/": (
        "mealplan_cli.mealplans",
        "mealplan_cli.cli",
        "mealplan_cli.runtime",
        "mealplan_cli.handlers",
        *UI,
    ),
    "mealplan_cli/core/db/": (
        "mealplan_cli.core.queue",
        "mealplan_cli.core.handlers",
        "mealplan_cli.core.worker",
    ),
    "mealplan_cli/core/queue.py": ("mealplan_cli.core.worker",),
    "mealplan_cli/core/handlers.py": ("mealplan_cli.core.worker",),
    "mealplan_cli/mealplans/": (
        "mealplan_cli.cli",
        "mealplan_cli.core.worker",
        "mealplan_cli.runtime",
        *UI,
    ),
    # The generation library knows nothing of queues, databases or the job around it.
    "mealplan_cli/mealplans/generation/": (
        "mealplan_cli.core",
        "mealplan_cli.mealplans.plans",
        "mealplan_cli.mealplans.job",
        "mealplan_cli.mealplans.days",
    ),
    "mealplan_cli/ops/": ("mealplan_cli.cli", "typer"),
    "mealplan_cli/ops/metrics.py": ("rich",),
    "mealplan_cli/ops/monitoring.py": ("rich",),
    "mealplan_cli/runtime.py": ("mealplan_cli.cli", *UI),
    "mealplan_cli/handlers.py": ("mealplan_cli.cli", *UI),
}


def test_every_library_module_has_import_rules() -> None:
    unruled = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if not str(path.relative_to(ROOT)).startswith(("mealplan_cli/cli/", *FORBIDDEN))
        and path.name not in ("__init__.py", "__main__.py")
    ]
    assert unruled == [], "add these modules to FORBIDDEN"


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_the_layers_import_only_downwards(prefix: str) -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        where = str(path.relative_to(ROOT))
        if not where.startswith(prefix):
            continue
        for module in imported_modules(path):
            own = module.replace(".", "/")
            if any(module.startswith(bad) for bad in FORBIDDEN[prefix]) and not where.startswith(
                own
            ):
                offenders.append(f"{where} imports {module}")
    assert offenders == []


def test_the_published_schema_is_current() -> None:
    published = json.loads(TARGET.read_text(encoding="utf-8"))
    assert published == plan_json_schema(), (
        "schema/meal-plan.schema.json is stale: run python scripts/export_schema.py"
    )


def test_every_package_is_in_the_distribution() -> None:
    """A plain ``pip install`` ships only the packages pyproject lists: a new package folder
    left out of it imports from a checkout and fails everywhere else."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {".".join(path.parent.relative_to(ROOT).parts) for path in PACKAGE.rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
