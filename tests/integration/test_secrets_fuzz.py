"""No password leaves, whatever it is made of: random printable passwords, written into every
form of ``DATABASE_URL`` a user may type (percent-encoded or not, in a URL's user part or its
``?password=``, in key=value pairs quoted or not), through the commands that print a
connection string when it fails: an unreachable server, an unknown database, a malformed
string. Neither stdout nor stderr (``--json`` and ``--debug`` included) may show it in any
shape: as typed, percent-encoded, percent-decoded or JSON-escaped.

The examples are few (each runs a command) so the test takes seconds; the fixed cases in
``tests/process/test_secrets.py`` and ``test_connection_strings`` cover the issue's own examples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.settings.connection_strings import check_connection_string

runner = CliRunner()

SPECIAL = "@:/%?&=#'\"\\ ;,+"
PLACEHOLDER = "Placeholder9"

Form = Callable[[str, dict[str, str]], str]


def _keyword_quoted(password: str) -> str:
    return "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"


FORMS: dict[str, Form] = {
    "url-encoded": lambda p, t: (
        f"postgresql://postgres:{quote(p, safe='')}@{t['host']}:{t['port']}/{t['db']}"
    ),
    "url-raw": lambda p, t: f"postgresql://postgres:{p}@{t['host']}:{t['port']}/{t['db']}",
    "query-encoded": lambda p, t: (
        f"postgresql://postgres@{t['host']}:{t['port']}/{t['db']}?password={quote(p, safe='')}"
    ),
    "query-raw": lambda p, t: (
        f"postgresql://postgres@{t['host']}:{t['port']}/{t['db']}?password={p}"
    ),
    "keywords-quoted": lambda p, t: (
        f"host={t['host']} port={t['port']} dbname={t['db']} user=postgres "
        f"password={_keyword_quoted(p)}"
    ),
    "keywords-raw": lambda p, t: (
        f"host={t['host']} port={t['port']} dbname={t['db']} user=postgres password={p}"
    ),
}

COMMANDS = [
    ["stats"],
    ["stats", "--json"],
    ["requeue", "--stale"],
    ["requeue", "--stale", "--json"],
    ["migrate"],
    ["doctor"],
    ["doctor", "--json"],
    ["--debug", "stats"],
    ["work", "--until-empty"],
]
"""``work`` keeps retrying a database it cannot reach: it runs only with a string that is
refused before any connection (tests/process/test_secrets.py runs it as a process otherwise)."""

passwords = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_categories=["Cc"]),
    min_size=6,
    max_size=24,
).filter(lambda p: any(c in SPECIAL for c in p) and any(c.isalnum() for c in p))


def shapes(password: str) -> set[str]:
    """Every way the password could show up in output."""
    return {
        password,
        quote(password, safe=""),
        quote(password),
        unquote(password),
        json.dumps(password)[1:-1],
        json.dumps(password, ensure_ascii=False)[1:-1],
        _keyword_quoted(password)[1:-1],
    }


def run(dsn: str, command: list[str]) -> str:
    result = runner.invoke(app, command, env={"DATABASE_URL": dsn, "NO_COLOR": "1"})
    shown = result.stdout + result.stderr
    assert result.exit_code != 0 or command[0] == "doctor", shown  # it did fail
    return shown


@pytest.fixture(scope="module")
def targets(pg_server_url: str) -> dict[str, dict[str, str]]:
    info = conninfo_to_dict(pg_server_url)
    host = str(info.get("host") or "127.0.0.1")
    return {
        "refused": {"host": "127.0.0.1", "port": "1", "db": "postgres"},
        "unknown-db": {
            "host": quote(host, safe="") if host.startswith("/") else host,
            "port": str(info.get("port") or 5432),
            "db": "no_such_db_fuzz",
        },
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    password=passwords,
    form=st.sampled_from(sorted(FORMS)),
    kind=st.sampled_from(["refused", "unknown-db"]),
    command=st.sampled_from(COMMANDS),
)
@example(password="abc%def123", form="url-raw", kind="unknown-db", command=["stats"])
@example(password="x%2-secret", form="url-raw", kind="refused", command=["stats", "--json"])
@example(password="p@ss@word1", form="url-raw", kind="refused", command=["doctor"])
@example(password="pa:ss/wo@rd", form="url-raw", kind="unknown-db", command=["migrate"])
@example(password="it's a s3cret", form="keywords-quoted", kind="unknown-db", command=["stats"])
@example(password="q&x=1%zz", form="query-raw", kind="refused", command=["requeue", "--stale"])
def test_no_password_is_ever_printed(
    targets: dict[str, dict[str, str]], password: str, form: str, kind: str, command: list[str]
) -> None:
    target = targets[kind]
    dsn = FORMS[form](password, target)
    if command[0] == "work":
        try:
            check_connection_string(dsn)
        except ValueError:
            pass
        else:
            command = ["stats"]
    # The output with a plain password: a shape found in it is a word of the output, not a leak.
    baseline = ["stats"] if command[0] == "work" else command
    everything_else = run(FORMS[form](PLACEHOLDER, target), baseline)
    assume(not any(shape in everything_else for shape in shapes(password)))
    shown = run(dsn, command)
    for text in (shown, shown.replace("\n", "")):
        leaked = [shape for shape in shapes(password) if shape in text]
        assert not leaked, f"{dsn!r} {command}: {leaked} in {shown}"
