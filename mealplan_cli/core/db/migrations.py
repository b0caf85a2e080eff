"""Applying ``supabase/migrations`` in order, recorded in mealworker's own ledger.

Each file runs in its own transaction under an advisory lock, so two ``migrate`` runs at once
never both apply a file: the second waits, then finds it applied. A file whose statements differ
from what was recorded is refused rather than silently skipped or re-run.

The ledger is ``mealworker_private.migrations``: a schema the Data API does not expose and
``anon``/``authenticated`` cannot use. The Supabase CLI's ``supabase_migrations.schema_migrations``
belongs to the app's own project: writing into it makes the app's next ``supabase db push``
refuse ("Remote migration versions not found in local migrations directory"), so it is only
ever read. A file found there with exactly our statements (applied by an earlier mealworker, or
by ``supabase db push`` of files written by ``migrate --export``) is taken into our ledger
without running again; a file of the same version with other statements (the Node worker's
``20240101000000_create_background_jobs.sql``) is not ours and counts for nothing.

A database can hold another program's tables where the migrations would put theirs (the original
Node worker's ``background_jobs`` and the app's ``meal_plans``). The caller says how to find them
(``prior_schema``): the core knows no such program. ``mealplan_cli.mealplans.adoption`` finds the
Node worker's; ``migrate`` refuses such a database, and ``migrate --adopt`` takes it over.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Protocol

import psycopg

from mealplan_cli.ops.errors import (
    DatabaseError,
    ExportConflictError,
    LegacySchemaError,
    MigrationEditedError,
)

LEDGER_SCHEMA = "mealworker_private"
LEDGER = f"{LEDGER_SCHEMA}.migrations"
SUPABASE_LEDGER = "supabase_migrations.schema_migrations"
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
    via_supabase_cli: bool = False
    """Not in our ledger yet, but recorded with our statements by the Supabase CLI."""


def migrations_folder() -> Traversable:
    """The bundled SQL files; from a source checkout, ``supabase/migrations`` itself."""
    try:
        return resources.files("mealplan_cli.migrations")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[3] / "supabase" / "migrations"


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
revoke all on schema {LEDGER_SCHEMA} from public;
create table if not exists {LEDGER} (
    version text not null primary key,
    name text not null,
    statements text[] not null,
    applied_at timestamptz not null default now(),
    applied_by text not null default 'mealworker migrate'
);
revoke all on table {LEDGER} from public;
do $$
declare
  r text;
begin
  -- Where these roles exist, take away whatever default privileges may have given them.
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = r) then
      execute pg_catalog.format('revoke all on table {LEDGER} from %I', r);
    end if;
  end loop;
end
$$
"""
"""Our ledger: readable and writable by the database owner (who runs ``migrate``) only."""

Conn = psycopg.AsyncConnection[tuple[object, ...]]


async def _exists(conn: Conn, relation: str) -> bool:
    row = await (await conn.execute("select to_regclass(%s) is not null", (relation,))).fetchone()
    return bool(row and row[0])


async def _ledger_rows(conn: Conn, relation: str) -> dict[str, list[str]]:
    if not await _exists(conn, relation):
        return {}
    rows = await (await conn.execute(f"select version, statements from {relation}")).fetchall()
    return {str(row[0]): [str(s) for s in row[1] or []] for row in rows}  # type: ignore[attr-defined]


async def _recorded(conn: Conn) -> dict[str, list[str]]:
    return await _ledger_rows(conn, LEDGER)


async def _supabase_recorded(conn: Conn) -> dict[str, list[str]]:
    return await _ledger_rows(conn, SUPABASE_LEDGER)


def _ours_in_supabase_ledger(migration: Migration, supabase: dict[str, list[str]]) -> bool:
    """Recorded by the Supabase CLI with exactly this file's statements (so it really ran)."""
    return supabase.get(migration.version) == migration.statements


async def migration_status(
    conn: Conn, migrations: list[Migration] | None = None
) -> list[MigrationStatus]:
    """Which bundled migrations have run, and whether any was edited since."""
    recorded = await _recorded(conn)
    supabase = await _supabase_recorded(conn)
    result = []
    for migration in migrations if migrations is not None else bundled_migrations():
        statements = recorded.get(migration.version)
        if statements is None and _ours_in_supabase_ledger(migration, supabase):
            result.append(MigrationStatus(migration, True, via_supabase_cli=True))
            continue
        applied = statements is not None
        edited = applied and bool(statements) and statements != migration.statements
        result.append(MigrationStatus(migration, applied, edited))
    return result


async def _take_over_supabase_records(conn: Conn, migrations: list[Migration]) -> None:
    """Copy into our ledger the files the Supabase CLI ledger shows ran with our statements."""
    recorded = await _recorded(conn)
    supabase = await _supabase_recorded(conn)
    for migration in migrations:
        if migration.version not in recorded and _ours_in_supabase_ledger(migration, supabase):
            await _record(conn, migration, applied_by="supabase cli (taken over)")


async def _record(conn: Conn, migration: Migration, *, applied_by: str) -> None:
    await conn.execute(
        f"insert into {LEDGER} (version, name, statements, applied_by) values (%s, %s, %s, %s)",
        (migration.version, migration.name, migration.statements, applied_by),
    )


async def _apply_one(conn: Conn, migration: Migration) -> bool:
    """Run ``migration`` unless recorded (inside the caller's transaction); True if it ran."""
    recorded = await _recorded(conn)
    if migration.version in recorded:
        statements = recorded[migration.version]
        if statements and statements != migration.statements:
            raise MigrationEditedError(
                f"migration {migration.file_name} was edited after it was applied: "
                "restore the original file and put the change in a new migration"
            )
        return False
    try:
        await conn.execute(migration.sql.encode())
    except psycopg.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DatabaseError(
            f"migration {migration.file_name} failed, nothing of it was applied: {first}",
            code=error.sqlstate,
        ) from None
    await _record(conn, migration, applied_by="mealworker migrate")
    return True


class PriorSchema(Protocol):
    """Another program's tables where the first migration would put its own."""

    @property
    def notes(self) -> list[str]:
        """What ``prepare`` and ``finish`` did, for the operator."""
        ...

    def refusal(self) -> str:
        """Why the migrations cannot run as the database is, and what to do."""
        ...

    def check_adoptable(self) -> None:
        """Raises ``LegacySchemaError`` when even a take-over cannot be done."""
        ...

    async def prepare(self, conn: Conn) -> None:
        """The take-over's part before the migrations, in their transaction."""
        ...

    async def finish(self, conn: Conn) -> None:
        """The take-over's part after the migrations, in the same transaction."""
        ...


FindPriorSchema = Callable[[Conn], Awaitable[PriorSchema | None]]
"""Looks for another program's tables before the first migration; None when there are none."""


async def apply_migrations(
    conn: Conn,
    migrations: list[Migration] | None = None,
    *,
    prior_schema: FindPriorSchema | None,
    adopt: bool = False,
    report: list[str] | None = None,
) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; returns those applied.

    ``conn`` must be in autocommit mode; transactions are opened here. Before the first
    migration, ``prior_schema`` looks for another program's tables (None: the caller knows the
    database holds none, as in one mealworker created). A database holding them is refused
    (``LegacySchemaError``, nothing changed) unless ``adopt``; then the take-over and every
    migration run in one transaction, so that it either happens whole or not at all; what it
    did is appended to ``report``.
    """
    migrations = migrations if migrations is not None else bundled_migrations()
    applied: list[Migration] = []
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        first_done = bool(migrations) and (
            migrations[0].version in await _recorded(conn)
            or _ours_in_supabase_ledger(migrations[0], await _supabase_recorded(conn))
        )
        prior = None if first_done or prior_schema is None else await prior_schema(conn)
        if prior is not None:
            if not adopt:
                raise LegacySchemaError(prior.refusal())
            prior.check_adoptable()
        await conn.execute(LEDGER_DDL)
        await _take_over_supabase_records(conn, migrations)
        if prior is not None:
            try:
                await prior.prepare(conn)
                applied = [m for m in migrations if await _apply_one(conn, m)]
                await prior.finish(conn)
            except psycopg.Error as error:
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise LegacySchemaError(
                    f"migrate --adopt failed, nothing was changed: {first}", code=error.sqlstate
                ) from None
            if report is not None:
                report.extend(prior.notes)
            return applied
    for migration in migrations:
        async with conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            await conn.execute(LEDGER_DDL)
            if await _apply_one(conn, migration):
                applied.append(migration)
    return applied


def pending_sql(statuses: list[MigrationStatus]) -> str:
    """The SQL of every pending migration, ready for Supabase's SQL editor.

    Each file is followed by the insert into our ledger, in the same transaction, so that a
    later ``migrate`` (or ``--status``) knows it ran.
    """
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
            f"insert into {LEDGER} (version, name, statements, applied_by) values "
            f"('{migration.version}', '{migration.name}', {statements_literal}, "
            "'mealworker migrate --sql') on conflict (version) do nothing;\ncommit;\n"
        )
    return "\n".join(parts)


@dataclass(frozen=True)
class Exported:
    written: list[str]
    unchanged: list[str]


def export_migrations(folder: Path, migrations: list[Migration] | None = None) -> Exported:
    """Write the migration files into an app's ``supabase/migrations``.

    Refuses (writing nothing) when a file of the same name with other content is there: the
    Node worker's ``20240101000000_create_background_jobs.sql`` is the usual one.
    """
    migrations = migrations if migrations is not None else bundled_migrations()
    if folder.exists() and not folder.is_dir():
        raise ExportConflictError(f"{folder} is not a folder")
    conflicts, written, unchanged = [], [], []
    for migration in migrations:
        target = folder / migration.file_name
        if target.exists():
            if target.read_text(encoding="utf-8") == migration.sql:
                unchanged.append(migration.file_name)
            else:
                conflicts.append(migration.file_name)
    if conflicts:
        raise ExportConflictError(
            f"{folder} already has a different {', '.join(conflicts)}; nothing was written. "
            "If it is the Node worker's migration, keep it (your Supabase ledger records it) and "
            "use `mealworker migrate` instead of exporting; otherwise move the file away first"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for migration in migrations:
        if migration.file_name not in unchanged:
            (folder / migration.file_name).write_text(migration.sql, encoding="utf-8")
            written.append(migration.file_name)
    return Exported(written, unchanged)
