"""Applying ``supabase/migrations`` in order, recorded where the Supabase CLI records them.

Each file runs in its own transaction under an advisory lock, so two ``migrate`` runs at once
never both apply a file: the second waits, then finds it applied. The ledger is the Supabase
CLI's own ``supabase_migrations.schema_migrations (version, statements, name)``, so
``supabase db push`` and ``mealworker migrate`` agree on what has run; a file whose statements
differ from what was recorded is refused rather than silently skipped or re-run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import psycopg

from mealplan_cli.errors import MigrationEditedError as MigrationEditedError  # re-exported

LEDGER_SCHEMA = "supabase_migrations"
LOCK_KEY = 7_420_113_001
"""Advisory lock id that serialises migrations (any constant unlikely to clash)."""

_FILE_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[A-Za-z0-9_\-]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version}_{self.name}.sql"

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


@dataclass(frozen=True)
class MigrationStatus:
    migration: Migration
    applied: bool
    edited: bool = False


def migrations_folder() -> Traversable:
    """The bundled SQL files; from a source checkout, ``supabase/migrations`` itself."""
    try:
        return resources.files("mealplan_cli.migrations")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "supabase" / "migrations"


def bundled_migrations(folder: Traversable | None = None) -> list[Migration]:
    """Every migration file, oldest first."""
    folder = folder or migrations_folder()
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(
                Migration(match["version"], match["name"], entry.read_text(encoding="utf-8"))
            )
    return sorted(found, key=lambda m: m.version)


def split_statements(sql: str) -> list[str]:
    """The statements of a SQL script, as the Supabase CLI stores them (trimmed, no ``;``).

    Knows quotes, dollar-quoted bodies and comments, which is all a migration needs.
    """
    statements: list[str] = []
    current: list[str] = []
    i, length = 0, len(sql)
    while i < length:
        char = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            end = length if end == -1 else end
            current.append(sql[i:end])
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = length if end == -1 else end + 2
            current.append(sql[i:end])
            i = end
        elif char in "'\"":
            end = i + 1
            while end < length:
                if sql[end] == char:
                    if end + 1 < length and sql[end + 1] == char:
                        end += 2
                        continue
                    break
                end += 1
            current.append(sql[i : end + 1])
            i = end + 1
        elif char == "$" and (tag := re.match(r"\$[A-Za-z_]*\$", sql[i:])):
            end = sql.find(tag.group(), i + len(tag.group()))
            end = length if end == -1 else end + len(tag.group())
            current.append(sql[i:end])
            i = end
        elif char == ";":
            _flush(current, statements)
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    _flush(current, statements)
    return statements


def _flush(parts: list[str], statements: list[str]) -> None:
    text = "".join(parts).strip()
    if text and not all(
        line.strip().startswith("--") or not line.strip() for line in text.splitlines()
    ):
        statements.append(text)


LEDGER_DDL = f"""
create schema if not exists {LEDGER_SCHEMA};
create table if not exists {LEDGER_SCHEMA}.schema_migrations (
    version text not null primary key,
    statements text[],
    name text
)
"""


async def _recorded(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> dict[str, list[str]]:
    exists = await (
        await conn.execute(
            "select to_regclass(%s) is not null", (f"{LEDGER_SCHEMA}.schema_migrations",)
        )
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = await (
        await conn.execute(f"select version, statements from {LEDGER_SCHEMA}.schema_migrations")
    ).fetchall()
    return {str(row[0]): [str(s) for s in row[1] or []] for row in rows}  # type: ignore[attr-defined]


async def migration_status(
    conn: psycopg.AsyncConnection[tuple[object, ...]], migrations: list[Migration] | None = None
) -> list[MigrationStatus]:
    """Which bundled migrations have run, and whether any was edited since."""
    recorded = await _recorded(conn)
    result = []
    for migration in migrations if migrations is not None else bundled_migrations():
        statements = recorded.get(migration.version)
        applied = statements is not None
        edited = applied and bool(statements) and statements != migration.statements
        result.append(MigrationStatus(migration, applied, edited))
    return result


async def apply_migrations(
    conn: psycopg.AsyncConnection[tuple[object, ...]], migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; returns those applied.

    ``conn`` must be in autocommit mode; transactions are opened here.
    """
    migrations = migrations if migrations is not None else bundled_migrations()
    applied: list[Migration] = []
    for migration in migrations:
        async with conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            await conn.execute(LEDGER_DDL)
            recorded = await _recorded(conn)
            if migration.version in recorded:
                statements = recorded[migration.version]
                if statements and statements != migration.statements:
                    raise MigrationEditedError(
                        f"migration {migration.file_name} was edited after it was applied: "
                        "restore the original file and put the change in a new migration"
                    )
                continue
            await conn.execute(migration.sql.encode())
            await conn.execute(
                f"insert into {LEDGER_SCHEMA}.schema_migrations (version, statements, name) "
                "values (%s, %s, %s)",
                (migration.version, migration.statements, migration.name),
            )
        applied.append(migration)
    return applied


def pending_sql(statuses: list[MigrationStatus]) -> str:
    """The SQL of every pending migration, ready for Supabase's SQL editor (ledger included)."""
    parts = []
    for status in statuses:
        if status.applied:
            continue
        migration = status.migration
        quoted = ", ".join("'" + s.replace("'", "''") + "'" for s in migration.statements)
        statements_literal = f"array[{quoted}]::text[]"
        parts.append(
            f"-- {migration.file_name}\nbegin;\n{migration.sql.rstrip()}\n"
            f"{LEDGER_DDL.strip()};\n"
            f"insert into {LEDGER_SCHEMA}.schema_migrations (version, statements, name) values "
            f"('{migration.version}', {statements_literal}, '{migration.name}');\ncommit;\n"
        )
    return "\n".join(parts)
