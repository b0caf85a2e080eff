"""The operator CLI driven in-process (Typer's runner), and plain SQL to check what it did."""

from __future__ import annotations

import psycopg
from typer.testing import CliRunner

from mealplan_cli.cli import app

runner = CliRunner()


def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def sql(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []
