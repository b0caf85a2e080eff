"""What starting a command costs: ``--help`` and a ping-only worker import only what they use.

Counted in modules, not seconds (timings are for ``scripts/bench/startup.py``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.cli.app import SETTINGS_VARIABLES, Planner
from mealplan_cli.settings.config import PlannerChoice, Settings
from tests.helpers.processes import clean_environment, wait_until

HEAVY = (
    "pydantic",
    "psycopg",
    "openai",
    "supabase",
    "postgrest",
    "httpx",
    "rich",
    "mealplan_cli.mealplans.generation",
)
LIGHT = (
    "mealplan_cli.mealplans",  # a docstring only
    "mealplan_cli.mealplans.generation",
    "mealplan_cli.mealplans.generation.vocabulary",
)
"""The request's vocabulary (``--allergies`` lists the aliases), without the library behind it."""


def imported_by(*code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *code],
        capture_output=True,
        text=True,
        check=False,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_help_imports_no_database_client_no_pydantic_no_generation() -> None:
    modules = imported_by("-m", "mealplan_cli", "--help")
    assert "mealplan_cli.cli.worker_commands" in modules  # it did run the CLI
    assert sorted(m for m in modules if m.startswith(HEAVY) and m not in LIGHT) == []


@pytest.mark.parametrize("job_types", [["ping"]])
def test_a_ping_worker_loads_no_meal_plan_code(job_types: list[str]) -> None:
    code = (
        "import mealplan_cli.cli.worker_commands\n"
        "from mealplan_cli.runtime import builtin_handlers\n"
        "from mealplan_cli.core.db.connect import open_database\n"
        f"builtin_handlers({job_types!r})\n"
    )
    modules = imported_by("-c", code)
    assert "mealplan_cli.runtime" in modules
    heavy = (
        "pydantic",
        "openai",
        "supabase",
        "postgrest",
        "httpx",
        "mealplan_cli.mealplans.generation",
        "mealplan_cli.mealplan",
    )
    assert sorted(m for m in modules if m.startswith(heavy) and m not in LIGHT) == []


def test_settings_and_the_worker_library_load_no_pydantic() -> None:
    """Reading the settings is every command's first step; pydantic is for meal plans only."""
    code = (
        "import sys\n"
        "import mealplan_cli.settings.config, mealplan_cli.runtime, mealplan_cli.core.worker\n"
        "import mealplan_cli.core.db.connect\n"
        "settings = mealplan_cli.settings.config.Settings.load(env_file=None, environ={})\n"
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_planner_option_offers_the_settings_choices() -> None:
    assert [p.value for p in Planner] == [p.value for p in PlannerChoice]


def test_a_real_ping_worker_process_loads_no_pydantic_openai_or_rich(
    database_url: str, tmp_path: Path
) -> None:
    """``mealworker work --job-type ping`` as PM2 or systemd runs it (output to a file, not a
    terminal), from start to a SIGTERM after "ready to claim": every module it imports in its
    whole life, the CLI library's option parsing included. pydantic is for meal plans only
    (typer 0.29 loaded it to parse options), openai for the planner, and rich for a person at
    a terminal."""
    env = {**clean_environment(), "DATABASE_URL": database_url, "LOG_LEVEL": "INFO"}
    env["LOG_DIR"] = str(tmp_path / "logs")
    log = tmp_path / "worker.log"
    command = [sys.executable, "-X", "importtime", "-m", "mealplan_cli", "work", "--job-type"]
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*command, "ping"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "ready to claim" in log.read_text(), 60, "the worker to be ready")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()[-2000:]
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in log.read_text().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "mealplan_cli.core.worker.loop" in modules  # it did run the worker
    heavy = ("pydantic", "openai", "rich")
    assert sorted(m for m in modules if m.split(".")[0] in heavy) == []


def test_help_names_every_setting_s_variable() -> None:
    assert [name.upper() for name in Settings.model_fields] == SETTINGS_VARIABLES


def every_parameter() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(command: Any, path: str) -> None:
        found.extend((path, param) for param in command.params)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(get_command(app), "mealworker")
    return found


def test_every_option_is_described_and_settings_name_their_variable() -> None:
    undescribed = [
        f"{path} {param.opts[0]}"
        for path, param in every_parameter()
        if not getattr(param, "help", None) and param.param_type_name == "option"
    ]
    assert undescribed == []
    variables = {
        f"{path} {param.opts[0]}": param.envvar
        for path, param in every_parameter()
        if getattr(param, "envvar", None)
    }
    assert set(variables.values()) <= set(SETTINGS_VARIABLES)
    for option in ("--planner", "--concurrency", "--poll-interval", "--worker-id"):
        assert f"mealworker work {option}" in variables
    assert "mealworker run-job --planner" in variables


def test_help_lists_every_choice() -> None:
    from mealplan_cli.cli.tail import EVENTS

    result = CliRunner().invoke(app, ["tail", "--help"], terminal_width=200)
    assert ", ".join(EVENTS) in " ".join(result.stdout.split())
    result = CliRunner().invoke(app, ["work", "--help"], terminal_width=200)
    assert "<auto|openai|catalog>" in result.stdout
    assert "[env var: PLANNER]" in result.stdout
