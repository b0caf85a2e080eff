"""No password leaves: every command that connects, fed each form of DATABASE_URL.

The test server trusts local connections, so a password in any form still connects: each
command runs for real (success paths print targets and logs) and against a target that
refuses (error paths print the cause). Neither may show the password, on stdout, stderr, in
the log files, in ``--json`` output, or in a ``--debug`` traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.ops.redact import Redactor, dsn_passwords, mask_positions, redact_dsn
from mealplan_cli.settings.connection_strings import check_connection_string
from tests.helpers.processes import clean_environment, wait_until

PASSWORD = "Tr0ub4dor-xyz"
SPACED = "two words&more"

COMMANDS = [
    ["work", "--until-empty"],
    ["stats"],
    ["stats", "--json"],
    ["tail", "--no-follow"],
    ["tail", "--no-follow", "--json"],
    ["requeue", "--stale"],
    ["requeue", "--stale", "--json"],
    ["cancel", "424242"],
    ["cancel", "424242", "--json"],
    ["run-job", "424242"],
    ["enqueue", "--type", "ping", "--json"],
    ["migrate"],
    ["migrate", "--status"],
    ["doctor"],
    ["doctor", "--json"],
]

Form = Callable[[dict[str, str]], str]

WORKING: dict[str, Form] = {
    "url": lambda p: (
        f"postgresql://{p['user']}:{PASSWORD}@{p['urlhost']}:{p['port']}/{p['dbname']}"
    ),
    "url-query": lambda p: (
        f"postgresql://{p['urlhost']}:{p['port']}/{p['dbname']}?user={p['user']}&password={PASSWORD}"
    ),
    "keywords": lambda p: (
        f"host={p['host']} port={p['port']} dbname={p['dbname']} user={p['user']} "
        f"password={PASSWORD}"
    ),
    "keywords-quoted": lambda p: (
        f"host={p['host']} port={p['port']} dbname={p['dbname']} user={p['user']} "
        f"password='{SPACED}'"
    ),
}
FAILING: dict[str, Form] = {
    "no-scheme": lambda p: f"{p['user']}:{PASSWORD}@{p['host']}/{p['dbname']}",
    "url-unknown-db": lambda p: (
        f"postgresql://{p['user']}:{PASSWORD}@{p['urlhost']}:{p['port']}/no_such_db_here"
    ),
    "keywords-unknown-db": lambda p: (
        f"host={p['host']} port={p['port']} dbname=no_such_db_here user={p['user']} "
        f"password='{SPACED}'"
    ),
    "url-refused": lambda p: f"postgresql://{p['user']}:{PASSWORD}@{p['urlhost']}:1/{p['dbname']}",
    "keywords-unterminated": lambda p: f"host={p['host']} password='{SPACED}",
}

runner = CliRunner()


def parts(database_url: str) -> dict[str, str]:
    info = {k: str(v) for k, v in conninfo_to_dict(database_url).items()}
    found = {"host": "127.0.0.1", "port": "5432", "user": "postgres", **info}
    return {**found, "urlhost": quote(found["host"], safe="")}  # a socket folder, encoded


def leaks(text: str) -> list[str]:
    return [secret for secret in (PASSWORD, SPACED, "two words") if secret in text]


def work_on_a_failing_database(env: dict[str, str], tmp_path: Path, *extra: str) -> str:
    """``work`` keeps retrying a database it cannot reach (saying why), so it runs as a process
    until it has said so twice, or has refused the setting at once, then gets SIGTERM."""
    out = tmp_path / "work.out"
    command = [sys.executable, "-m", "mealplan_cli", *extra, "work", "--job-type", "ping"]
    with out.open("wb") as sink:
        process = subprocess.Popen(
            command, env={**clean_environment(), **env}, stdout=sink, stderr=subprocess.STDOUT
        )
    wait_until(
        lambda: process.poll() is not None or out.read_text().count("database") >= 2,
        60,
        "the worker saying it cannot reach its database",
    )
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, out.read_text()
    return out.read_text()


def run_everything(dsn: str, tmp_path: Path, *extra: str, failing: bool = False) -> None:
    logs = tmp_path / "logs"
    env = {"DATABASE_URL": dsn, "LOG_DIR": str(logs), "LOG_LEVEL": "DEBUG"}
    for command in COMMANDS:
        if failing and command[0] == "work":
            shown = work_on_a_failing_database(env, tmp_path, *extra)
            assert not leaks(shown), f"{command}: {shown}"
            assert "error connecting in" not in shown, f"{command}: pool noise: {shown}"
            continue
        result = runner.invoke(app, [*extra, *command], env=env)
        shown = result.stdout + result.stderr
        assert not leaks(shown), f"{command}: {shown}"
        assert "Traceback" not in shown or extra, f"{command}: {shown}"
        assert "error connecting in" not in shown, f"{command}: pool noise: {shown}"
    for file in logs.glob("*.log*") if logs.exists() else []:
        assert not leaks(file.read_text()), file


@pytest.mark.timeout(300)
@pytest.mark.parametrize("form", list(WORKING))
def test_no_command_prints_the_password_of_a_working_url(
    form: str, database_url: str, tmp_path: Path
) -> None:
    run_everything(WORKING[form](parts(database_url)), tmp_path)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("form", list(FAILING))
def test_no_command_prints_the_password_of_a_failing_url(
    form: str, database_url: str, tmp_path: Path
) -> None:
    dsn = FAILING[form](parts(database_url))
    run_everything(dsn, tmp_path, failing=True)
    run_everything(dsn, tmp_path, "--debug", failing=True)


def test_each_form_shows_its_target_with_the_password_masked() -> None:
    assert redact_dsn("postgresql://u:pa:ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_dsn("postgres:Secret@host/db") == "postgres:***@host/db"
    assert (
        mask_positions('after "postgres:Secret1@/run/pg/db" in')
        == 'after "postgres:***@/run/pg/db" in'
    )
    assert mask_positions("postgres:Secret1@%2Frun%2Fpg/db") == "postgres:***@%2Frun%2Fpg/db"
    assert redact_dsn("postgresql://h/db?user=u&password=x1&sslmode=require") == (
        "postgresql://h/db?user=u&password=***&sslmode=require"
    )
    assert redact_dsn("host=h password='a \\' b' user=u") == "host=h password=*** user=u"
    assert redact_dsn("host=h password = secret user=u") == "host=h password = *** user=u"
    assert mask_positions("to host=h password=x1: refused") == "to host=h password=***: refused"
    assert set(dsn_passwords("host=h password='a \\' b'")) >= {"a ' b"}


def test_a_weak_password_is_masked_in_its_place_but_not_as_a_word() -> None:
    redactor = Redactor(dsns=["postgresql://postgres:postgres@db:5432/postgres"])
    line = "transport postgres, connected to postgresql://postgres:postgres@db:5432/postgres"
    assert redactor.mask(line) == (
        "transport postgres, connected to postgresql://postgres:***@db:5432/postgres"
    )


def test_distinctive_secrets_are_masked_anywhere() -> None:
    redactor = Redactor(["sk-live-0123456789"], ["host=h password=Xy7-long-pass"])
    assert redactor.mask("key sk-live-0123456789 pass Xy7-long-pass") == "key *** pass ***"
    assert mask_positions("mail me at bob@example.com, 12:30:45") == (
        "mail me at bob@example.com, 12:30:45"
    )


def test_a_password_that_is_literally_postgres_leaves_the_word_alone(
    database_url: str, tmp_path: Path
) -> None:
    p = parts(database_url)
    dsn = f"postgresql://postgres:postgres@{p['urlhost']}:{p['port']}/{p['dbname']}"
    env = {"DATABASE_URL": dsn, "LOG_DIR": str(tmp_path / "logs")}
    result = runner.invoke(app, ["work", "--until-empty"], env=env)
    assert result.exit_code == 0, result.output
    combined = (tmp_path / "logs" / "combined.log").read_text()
    for text in (result.stderr, combined):
        assert "transport postgres" in text
        assert "***" not in text
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    settings = next(c for c in json.loads(result.stdout) if c["name"] == "settings")
    assert (
        f"postgresql://postgres:***@{p['urlhost']}:{p['port']}/{p['dbname']}" in settings["detail"]
    )
    assert "postgres:postgres@" not in result.stdout


KEYS = {
    "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_Q29tZS1vbi1ub3c",
    "OPENAI_API_KEY": "sk-proj-9Zx8Yw7Vu6Ts",
    "UNSPLASH_ACCESS_KEY": "Un5plash-Acc3ss-K3y",
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_no_command_prints_an_api_key(debug: list[str], tmp_path: Path) -> None:
    env = {**KEYS, "SUPABASE_URL": "http://127.0.0.1:1", "LOG_DIR": str(tmp_path / "logs")}
    env["OPENAI_BASE_URL"] = env["UNSPLASH_API_URL"] = "http://127.0.0.1:1"
    for command in COMMANDS[1:]:  # `work` keeps retrying an unreachable database, by design
        result = runner.invoke(app, [*debug, *command], env=env)
        shown = result.stdout + result.stderr
        assert result.exit_code != 0, f"{command}: {shown}"
        for key in KEYS.values():
            assert key not in shown, f"{command}: {shown}"
    for file in (tmp_path / "logs").glob("*.log*"):
        for key in KEYS.values():
            assert key not in file.read_text(), file


@pytest.mark.parametrize(
    ("dsn", "why"),
    [
        ("postgresql://user:abc%def123@db.example/db", "not UTF-8 text"),
        ("postgresql://user:x%2@db.example/db", "a % that does not start"),
        ("postgresql://postgres:p@ss@word1@db.example:5432/db", "more than one @"),
        ("postgresql://postgres:a/b:c@db.example:5432/db", "a / in the user name or password"),
        ("postgresql://postgres:two words@db.example/db", "white space"),
        ("postgresql://db.example/db?password=a&b", "not name=value"),
        ("postgres:Secret1@db.example/db", 'a key without "="'),
        ("host=db.example password='unclosed", "without its closing '"),
    ],
)
def test_a_connection_string_libpq_would_misread_is_refused_without_quoting_it(
    dsn: str, why: str
) -> None:
    result = runner.invoke(app, ["stats"], env={"DATABASE_URL": dsn})
    assert result.exit_code == 1
    assert why in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for fragment in ("abc%def", "x%2", "ss@word1", "a/b:c", "two words", "a&b", "Secret1"):
        assert fragment not in result.stderr


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p%40ss@h:5432/db",
        "postgresql://u:pa:ss@h/db?sslmode=require&application_name=a@b",
        "postgresql://h:5432/db?password=x%26y",
        "postgresql:///db?host=%2Frun%2Fpostgresql",
        "host=h password='a \\' b' user=u",
        "host=h port=5432 dbname=d",
        "",
    ],
)
def test_a_connection_string_libpq_reads_is_accepted(dsn: str) -> None:
    check_connection_string(dsn)


def test_a_password_holding_separators_is_masked_whole() -> None:
    assert redact_dsn("postgresql://postgres:p@ss@word1@h:5432/db") == (
        "postgresql://postgres:***@h:5432/db"
    )
    assert redact_dsn("postgresql://u:a'b\"c@h/db") == "postgresql://u:***@h/db"
    assert redact_dsn("postgresql://h/db?password=a'b\"c&sslmode=require") == (
        "postgresql://h/db?password=***&sslmode=require"
    )
    assert redact_dsn('host=h password=ab"c&d user=u') == "host=h password=*** user=u"
    assert mask_positions("reading postgres, the word, at localhost") == (
        "reading postgres, the word, at localhost"
    )
