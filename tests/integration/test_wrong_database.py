"""A worker on the wrong database says so loudly, or refuses: placeholders and the embedded
database under a service manager."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.core.db.connect import worker_database_notice
from mealplan_cli.ops.doctor import Verdict, transport_check
from mealplan_cli.ops.errors import ConfigurationError
from mealplan_cli.settings.config import PLACEHOLDER_HINTS, Settings, is_placeholder

runner = CliRunner()
ENV_EXAMPLE = Path(__file__).resolve().parents[2] / "env.example"


def example_placeholders() -> list[tuple[str, str]]:
    """Every commented ``NAME=value`` line of env.example whose setting has a placeholder."""
    found = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"# ([A-Z_]+)=(.+)", line.strip())
        if match and match[1].lower() in PLACEHOLDER_HINTS:
            found.append((match[1], match[2]))
    return found


def test_env_example_shows_a_placeholder_for_every_secret_and_target() -> None:
    assert {name.lower() for name, _ in example_placeholders()} == set(PLACEHOLDER_HINTS)


@pytest.mark.parametrize(("name", "value"), example_placeholders())
def test_a_placeholder_left_from_env_example_is_refused_by_name(
    name: str, value: str, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"{name}={value}\n")
    result = runner.invoke(app, ["generate", "--days", "1", "--json"])
    assert result.exit_code == 1
    assert f"{name} (from .env)" in result.stderr
    assert "still the placeholder from env.example" in result.stderr
    assert "\n" not in result.stderr.strip()


@pytest.mark.parametrize(
    "value",
    ["your-service-role-key", "https://your-project.supabase.co", "sk-...", "<anon-key>"],
)
def test_tutorial_placeholders_are_recognised(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize(
    "value",
    ["sk-proj-Abc123", "https://abcd.supabase.co", "postgresql://u:p@db.abcd.supabase.co/x"],
)
def test_real_values_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PM2_HOME": "/root/.pm2", "pm_id": "0"}, "PM2"),
        ({"INVOCATION_ID": "abc", "JOURNAL_STREAM": "8:123"}, "systemd"),
        ({}, "no terminal"),
    ],
)
def test_work_refuses_the_embedded_database_under_a_service_manager(
    environ: dict[str, str], named: str
) -> None:
    result = runner.invoke(app, ["work", "--until-empty"], env=environ)
    assert result.exit_code == 1
    assert "refusing to run the worker under" in result.stderr
    assert named in result.stderr.split(" on the embedded database")[0]
    assert "MEALWORKER_EMBEDDED=1" in result.stderr


def test_an_explicit_setting_allows_the_embedded_database() -> None:
    settings = Settings(mealworker_embedded=True)
    notice = worker_database_notice(settings, environ={"PM2_HOME": "x"}, interactive=False)
    assert notice is not None
    assert "using the embedded database in" in notice
    with pytest.raises(ConfigurationError):
        worker_database_notice(Settings(), environ={"PM2_HOME": "x"}, interactive=False)
    assert worker_database_notice(Settings(), environ={}, interactive=True) is not None


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_work_on_the_embedded_database_says_so_naming_the_folder(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    data = embedded_data_dir
    env = {"MEALWORKER_DATA_DIR": str(data), "LOG_DIR": str(tmp_path / "logs")}
    result = runner.invoke(app, ["work", "--until-empty"], env=env)
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"WARNING .*using the embedded database in {re.escape(str(data))}", result.stderr
    )


def test_doctor_warns_about_the_embedded_database() -> None:
    check = transport_check(Settings())
    assert check.verdict is Verdict.warn
    assert "never reach it" in check.detail
