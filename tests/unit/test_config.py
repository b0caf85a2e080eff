"""Settings: precedence, validation that names the variable, and secrets that never show."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.mealplans.generation.services import choose_planner
from mealplan_cli.ops.errors import ConfigurationError
from mealplan_cli.ops.redact import SecretStr
from mealplan_cli.settings.config import LogLevel, PlannerChoice, Settings

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
    assert result.exit_code == 2  # asked wrongly: nothing was done
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


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_concurrent_jobs", 0, "Input should be greater than or equal to 1"),
        ("max_concurrent_jobs", "1001", "Input should be less than or equal to 1000"),
        ("openai_timeout_seconds", "0", "Input should be greater than 0"),
        (
            "poll_interval_ms",
            "soon",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "poll_interval_ms",
            2.5,
            "Input should be a valid integer, got a number with a fractional part",
        ),
        ("lease_seconds", "a minute", "Input should be a valid number"),
        ("lease_seconds", "nan", "Input should be a finite number"),
        ("mealworker_embedded", "maybe", "Input should be a valid boolean"),
        ("planner", "gpt", "Input should be 'auto', 'openai' or 'catalog'"),
        ("log_format", "xml", "Input should be 'rich', 'text' or 'json'"),
        ("log_level", "loud", "Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("supabase_url", "db.example.co", "must start with http:// or https://"),
        ("openai_model", 4, "Input should be a valid string"),
        ("not_a_setting", "x", "Extra inputs are not permitted"),
    ],
)
def test_each_bad_value_is_refused_with_a_reason(name: str, value: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(**{name: value})
    assert str(caught.value).startswith(f"invalid setting {name.upper()}: {message}")
    assert isinstance(caught.value, ValueError)


def test_every_bad_setting_is_named_once_in_field_order() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(
            {"surprise": 1}, env_file=None, environ={"LEASE_SECONDS": "0", "PLANNER": "x"}
        )
    assert str(caught.value) == (
        "invalid setting PLANNER (from environment): "
        "Input should be 'auto', 'openai' or 'catalog'; "
        "invalid setting LEASE_SECONDS (from environment): "
        "Input should be greater than or equal to 1; "
        "invalid setting SURPRISE (from the command line): Extra inputs are not permitted"
    )


def test_strings_are_parsed_as_each_setting_s_type() -> None:
    settings = Settings(
        planner=" Catalog ",
        log_level="warn",
        log_format="JSON",
        max_concurrent_jobs=" 500 ",
        lease_seconds="2.5",
        mealworker_embedded="Yes",
        log_dir="var/log",
        supabase_url="https://abcd.supabase.co/",
        database_url="postgresql://postgres@127.0.0.1:5432/postgres",
    )
    assert settings.planner is PlannerChoice.catalog
    assert settings.log_level is LogLevel.WARNING
    assert settings.log_format == "json"
    assert settings.max_concurrent_jobs == 500
    assert settings.lease_seconds == 2.5
    assert settings.mealworker_embedded is True
    assert settings.log_dir == Path("var/log")
    assert settings.supabase_url == "https://abcd.supabase.co"
    assert isinstance(settings.database_url, SecretStr)
    for word, meaning in [("0", False), ("off", False), ("NO", False), ("1", True), ("on", True)]:
        assert Settings(mealworker_embedded=word).mealworker_embedded is meaning


def test_settings_are_frozen_and_copied_with_validation() -> None:
    settings = Settings(max_concurrent_jobs=8)
    with pytest.raises(AttributeError):
        setattr(settings, "max_concurrent_jobs", 9)  # noqa: B010
    copy = settings.model_copy(update={"log_level": "debug"})
    assert copy.log_level is LogLevel.DEBUG
    assert copy.max_concurrent_jobs == 8
    assert settings.log_level is LogLevel.INFO
    assert copy != settings
    assert copy.model_copy(update={"log_level": LogLevel.INFO}) == settings
    with pytest.raises(ConfigurationError, match="MAX_CONCURRENT_JOBS"):
        settings.model_copy(update={"max_concurrent_jobs": 0})
    assert dict(settings)["max_concurrent_jobs"] == 8
    assert Settings.model_fields["max_concurrent_jobs"].default == 4
    assert list(Settings.model_fields) == [name for name, _ in settings]


@pytest.mark.parametrize(
    "given",
    [SECRET, SecretStr(SECRET), pydantic.SecretStr(SECRET)],
    ids=["str", "ours", "pydantic"],
)
def test_a_secret_is_taken_in_any_form_and_never_shown(given: object) -> None:
    settings = Settings(openai_api_key=given, database_url=f"postgresql://u:{SECRET}@db/x")
    assert isinstance(settings.openai_api_key, SecretStr)
    assert settings.openai_api_key.get_secret_value() == SECRET
    assert settings.openai_api_key == SecretStr(SECRET)
    shown = f"{settings!r} {settings} {settings.openai_api_key} {settings.public()}"
    assert SECRET not in shown
    assert "**********" in repr(settings.openai_api_key)


def test_a_placeholder_is_refused_and_a_database_url_one_is_not_repeated() -> None:
    with pytest.raises(ConfigurationError, match=r"OPENAI_API_KEY.*\(sk-\.\.\.\)"):
        Settings(openai_api_key="sk-...")
    example = "postgresql://postgres:...@db.<project>.supabase.co:5432/postgres"
    with pytest.raises(ConfigurationError) as caught:
        Settings(database_url=pydantic.SecretStr(example))
    assert "(the example)" in str(caught.value)
    assert example not in str(caught.value)


UNREADABLE_LINES = [
    ('DATABASE_URL="postgresql://postgres:s3cret-Pa55@db.example.com/postgres', "DATABASE_URL"),
    ("this is not a setting", None),
    ("DATABASE_URL='postgresql://x:unclosed-Pa55@h/db", "DATABASE_URL"),
]


@pytest.mark.parametrize(("bad_line", "name"), UNREADABLE_LINES)
@pytest.mark.parametrize("how", [".env", "--env-file"])
def test_a_settings_file_that_cannot_be_read_stops_the_command(
    tmp_path: Path, bad_line: str, name: str | None, how: str
) -> None:
    """python-dotenv warns and skips such a line; the command then ran on the embedded
    database and exited 0. Now: one line naming the file and the line, exit 2, no value."""
    settings = tmp_path / (".env" if how == ".env" else "worker.env")
    settings.write_text(f"# mealworker\nLOG_LEVEL=info\n\n{bad_line}\nPLANNER=catalog\n")
    args = ["stats"] if how == ".env" else ["--env-file", str(settings), "stats"]
    result = CliRunner().invoke(app, args, env={"MEALWORKER_DATA_DIR": str(tmp_path / "db")})
    assert result.exit_code == 2
    shown = settings.name if how == ".env" else str(settings)
    assert result.stderr.startswith(f"error: settings file {shown} line 4: cannot read it")
    assert len(result.stderr.strip().splitlines()) == 1
    if name:
        assert f"(the line setting {name})" in result.stderr
    assert "Pa55" not in result.stderr + result.stdout
    assert not (tmp_path / "db").exists()  # no embedded database was started


def test_an_unknown_setting_in_the_file_is_a_warning_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "PLANNER=catalog\nOPENAI_APIKEY=sk-abc\nlog_level=debug\nNODE_ENV=production\n"
    )
    result = CliRunner().invoke(app, ["generate", "--days", "1", "--json"])
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: .env line 2: OPENAI_APIKEY is not a mealworker setting "
        "(did you mean OPENAI_API_KEY?); it is ignored",
        "warning: .env line 3: log_level is not a mealworker setting (did you mean LOG_LEVEL?); "
        "it is ignored",
        "warning: .env line 4: NODE_ENV is not a mealworker setting; it is ignored",
    ]
