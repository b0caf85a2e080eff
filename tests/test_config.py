"""Settings: precedence, validation that names the variable, and secrets that never show."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.config import PlannerChoice, Settings
from mealplan_cli.errors import ConfigurationError
from mealplan_cli.generation.services import choose_planner

SECRET = "sk-live-very-secret-123456"


def test_defaults_need_no_configuration() -> None:
    settings = Settings.load(env_file=None, environ={})
    assert choose_planner(settings) is PlannerChoice.catalog
    assert settings.unsplash_access_key is None


def test_precedence_is_options_then_environment_then_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OPENAI_MODEL=from-file\nPOLL_INTERVAL_MS=250\nLOG_LEVEL=debug\n")
    settings = Settings.load(
        {"openai_model": None, "max_concurrent_jobs": 9},
        env_file=env_file,
        environ={"OPENAI_MODEL": "from-env", "MAX_CONCURRENT_JOBS": "3"},
    )
    assert settings.openai_model == "from-env"
    assert settings.poll_interval_ms == 250
    assert settings.max_concurrent_jobs == 9
    assert settings.log_level.value == "DEBUG"


def test_auto_uses_openai_when_a_key_is_set() -> None:
    settings = Settings.load(env_file=None, environ={"OPENAI_API_KEY": SECRET})
    assert choose_planner(settings) is PlannerChoice.openai


def test_asking_for_openai_without_a_key_says_what_to_set() -> None:
    settings = Settings.load({"planner": "openai"}, env_file=None, environ={})
    with pytest.raises(ConfigurationError, match=r"OPENAI_API_KEY.*--planner catalog"):
        choose_planner(settings)


def test_a_bad_value_names_its_variable_and_source_but_not_its_value(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"OPENAI_BASE_URL=ftp://{SECRET}\n")
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(env_file=env_file, environ={"MAX_CONCURRENT_JOBS": "lots"})
    message = str(caught.value)
    assert "OPENAI_BASE_URL (from" in message
    assert "MAX_CONCURRENT_JOBS (from environment)" in message
    assert SECRET not in message
    assert "lots" not in message


def test_secrets_are_hidden_in_repr_and_public_view() -> None:
    settings = Settings.load(
        env_file=None,
        environ={
            "OPENAI_API_KEY": SECRET,
            "UNSPLASH_ACCESS_KEY": SECRET + "u",
            "SUPABASE_SERVICE_ROLE_KEY": SECRET + "s",
            "DATABASE_URL": f"postgresql://u:{SECRET}@db/x",
        },
    )
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.public())
    assert settings.public()["openai_api_key"] == "set (hidden)"


def test_settings_never_write_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OPENAI_MODEL=from-file\n")
    assert Settings.load(env_file=env_file).openai_model == "from-file"
    assert "OPENAI_MODEL" not in os.environ


def test_a_bad_command_line_value_names_its_setting() -> None:
    with pytest.raises(ConfigurationError, match=r"MAX_CONCURRENT_JOBS \(from the command line\)"):
        Settings.load({"max_concurrent_jobs": 0}, env_file=None, environ={})


def test_an_option_filled_from_the_environment_names_the_environment() -> None:
    result = CliRunner().invoke(app, ["work", "--until-empty"], env={"MAX_CONCURRENT_JOBS": "0"})
    assert result.exit_code == 1
    assert "MAX_CONCURRENT_JOBS (from environment)" in result.stderr
    assert "command line" not in result.stderr
    result = CliRunner().invoke(app, ["work", "--until-empty", "--concurrency", "0"])
    assert "MAX_CONCURRENT_JOBS (from the command line)" in result.stderr


def test_a_missing_env_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.env"
    result = CliRunner().invoke(app, ["--env-file", str(missing), "stats"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: --env-file {missing}: no such file; give the path of an existing settings file"
    )


def test_the_env_file_s_own_name_is_the_source(tmp_path: Path) -> None:
    (tmp_path / "worker.env").write_text("POLL_INTERVAL_MS=1\n")
    result = CliRunner().invoke(
        app, ["--env-file", str(tmp_path / "worker.env"), "work", "--until-empty"]
    )
    assert result.exit_code == 1
    assert f"POLL_INTERVAL_MS (from {tmp_path / 'worker.env'})" in result.stderr
