"""``mealworker migrate`` and the migration runner, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.core.db.migrations import (
    Migration,
    apply_migrations,
    bundled_migrations,
    migration_status,
    split_statements,
)
from mealplan_cli.ops.errors import MigrationEditedError
from tests.helpers import pg

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_database(pg_server_url: str) -> Iterator[str]:
    name = f"mw_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    yield pg.with_database(pg_server_url, name)
    pg.drop(pg_server_url, name)


def test_statements_are_split_like_the_supabase_cli_records_them() -> None:
    script = """
    -- a comment; with a semicolon
    create table t (a text default 'x;y');
    create function f() returns int language plpgsql as $$
    begin
      return 1; -- inside
    end;
    $$;
    /* block; comment */
    select 'it''s';
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[0].endswith("create table t (a text default 'x;y')")
    assert "return 1; -- inside" in statements[1]
    assert statements[2].endswith("select 'it''s'")


def test_the_bundled_migrations_start_with_the_original_workers_file() -> None:
    first = bundled_migrations()[0]
    assert first.file_name == "20240101000000_create_background_jobs.sql"


def migrate(url: str) -> str:
    result = runner.invoke(app, ["migrate"], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_migrate_applies_then_is_a_no_op(empty_database: str) -> None:
    first = migrate(empty_database)
    assert "applied 20240101000000_create_background_jobs.sql" in first
    assert migrate(empty_database).strip() == "database is up to date"
    with psycopg.connect(empty_database) as conn:
        rows = conn.execute(
            "select version, name, array_length(statements, 1) "
            "from mealworker_private.migrations order by version"
        ).fetchall()
        assert conn.execute(
            "select to_regclass('supabase_migrations.schema_migrations')"
        ).fetchone() == (None,)
    assert rows[0][0] == "20240101000000"
    assert rows[0][1] == "create_background_jobs"
    assert rows[0][2] > 10


def test_status_lists_applied_and_pending(empty_database: str) -> None:
    before = runner.invoke(app, ["migrate", "--status"], env={"DATABASE_URL": empty_database})
    assert "pending" in before.stdout
    migrate(empty_database)
    after = runner.invoke(app, ["migrate", "--status"], env={"DATABASE_URL": empty_database})
    assert "applied" in after.stdout
    assert "pending" not in after.stdout


def test_two_migrations_at_once_apply_each_file_once(empty_database: str) -> None:
    async def one() -> list[Migration]:
        async with await psycopg.AsyncConnection.connect(empty_database, autocommit=True) as c:
            return await apply_migrations(c, prior_schema=None)

    async def both() -> list[list[Migration]]:
        return list(await asyncio.gather(one(), one()))

    results = asyncio.run(both())
    # Each file ran exactly once, whichever of the two ran it.
    versions = sorted(m.version for r in results for m in r)
    assert versions == [m.version for m in bundled_migrations()]


def test_an_edited_migration_is_refused(empty_database: str) -> None:
    original = bundled_migrations()

    async def run(migrations: list[Migration]) -> None:
        async with await psycopg.AsyncConnection.connect(empty_database, autocommit=True) as c:
            await apply_migrations(c, migrations, prior_schema=None)

    asyncio.run(run(original))
    edited = [
        Migration(original[0].version, original[0].name, original[0].sql + "\nselect 1;"),
        *original[1:],
    ]
    with pytest.raises(MigrationEditedError, match="edited after it was applied"):
        asyncio.run(run(edited))

    async def status() -> bool:
        async with await psycopg.AsyncConnection.connect(empty_database, autocommit=True) as c:
            return (await migration_status(c, edited))[0].edited

    assert asyncio.run(status())


def test_the_sql_for_supabases_editor_applies_and_records(empty_database: str) -> None:
    printed = runner.invoke(app, ["migrate", "--sql"], env={"DATABASE_URL": empty_database})
    assert printed.exit_code == 0
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(printed.stdout.encode())
        recorded = conn.execute(
            "select count(*) from mealworker_private.migrations "
            "where applied_by = 'mealworker migrate --sql'"
        ).fetchone()
    assert recorded == (len(bundled_migrations()),)
    assert migrate(empty_database).strip() == "database is up to date"


APP_LEDGER = """
create schema supabase_migrations;
create table supabase_migrations.schema_migrations (
  version text not null primary key, statements text[], name text);
insert into supabase_migrations.schema_migrations values
  ('20231201000000', array['create table public.recipes (id int)'], 'app_recipes');
create table public.recipes (id int);
"""


def test_the_apps_supabase_ledger_is_never_written(empty_database: str) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(APP_LEDGER)
    migrate(empty_database)
    with psycopg.connect(empty_database) as conn:
        ledger = conn.execute("select * from supabase_migrations.schema_migrations").fetchall()
        ours = conn.execute("select version from mealworker_private.migrations").fetchall()
        hidden = conn.execute(
            "select has_schema_privilege('anon', 'mealworker_private', 'usage'), "
            "has_schema_privilege('authenticated', 'mealworker_private', 'usage'), "
            "has_table_privilege('service_role', 'mealworker_private.migrations', 'select')"
        ).fetchone()
    assert ledger == [("20231201000000", ["create table public.recipes (id int)"], "app_recipes")]
    assert len(ours) == len(bundled_migrations())
    assert hidden == (False, False, False)


def test_files_applied_through_the_supabase_cli_are_taken_over_not_rerun(
    empty_database: str,
) -> None:
    """What an earlier mealworker, or `supabase db push` of exported files, leaves behind."""
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(APP_LEDGER)
        for migration in bundled_migrations():
            conn.execute(migration.sql.encode())
            conn.execute(
                "insert into supabase_migrations.schema_migrations values (%s, %s, %s)",
                (migration.version, migration.statements, migration.name),
            )
        # Were the first file run again, this index would be back.
        conn.execute("drop index public.background_job_events_created_at_idx")
    status = runner.invoke(app, ["migrate", "--status"], env={"DATABASE_URL": empty_database})
    assert "applied (Supabase CLI" in status.stdout
    assert "pending" not in status.stdout
    assert migrate(empty_database).strip() == "database is up to date"
    with psycopg.connect(empty_database) as conn:
        taken = conn.execute(
            "select distinct applied_by from mealworker_private.migrations"
        ).fetchall()
        index = conn.execute(
            "select to_regclass('public.background_job_events_created_at_idx')"
        ).fetchone()
    assert taken == [("supabase cli (taken over)",)]
    assert index == (None,)


def test_export_writes_the_files_and_never_overwrites_another(tmp_path: Path) -> None:
    target = tmp_path / "app" / "supabase" / "migrations"
    first = runner.invoke(app, ["migrate", "--export", str(target)])
    assert first.exit_code == 0, first.output
    names = sorted(p.name for p in target.iterdir())
    assert names == [m.file_name for m in bundled_migrations()]
    assert (target / names[0]).read_text() == bundled_migrations()[0].sql
    again = runner.invoke(app, ["migrate", "--export", str(target)])
    assert again.exit_code == 0
    assert "unchanged" in again.stdout
    assert "wrote" not in again.stdout

    other = tmp_path / "node-app" / "supabase" / "migrations"
    other.mkdir(parents=True)
    (other / names[0]).write_text("-- the Node worker's own migration\n")
    refused = runner.invoke(app, ["migrate", "--export", str(other)])
    assert refused.exit_code == 1
    assert "Traceback" not in refused.output
    assert f"already has a different {names[0]}" in refused.stderr
    assert "nothing was written" in refused.stderr
    assert [p.name for p in other.iterdir()] == [names[0]]
    assert (other / names[0]).read_text() == "-- the Node worker's own migration\n"


def test_with_only_rest_settings_migrate_says_how_to_proceed() -> None:
    env = {"SUPABASE_URL": "https://example.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": "k" * 40}
    result = runner.invoke(app, ["migrate"], env=env)
    assert result.exit_code == 1
    assert "DATABASE_URL" in result.stderr
    assert "migrate --sql" in result.stderr
    printed = runner.invoke(app, ["migrate", "--sql"], env=env)
    assert printed.exit_code == 0
    assert "create table if not exists public.background_jobs" in printed.stdout


def test_an_unreachable_database_is_one_clear_line() -> None:
    url = "postgresql://postgres:hunter2secret@127.0.0.1:1/postgres"
    result = runner.invoke(app, ["migrate"], env={"DATABASE_URL": url})
    assert result.exit_code == 1
    assert "cannot connect to postgresql://postgres:***@127.0.0.1:1/postgres" in result.stderr
    assert "hunter2secret" not in result.output


def test_the_wheel_ships_the_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("mealworker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mealplan_cli/migrations/20240101000000_create_background_jobs.sql" in names
    assert "mealplan_cli/mealplans/generation/data/ingredients.json" in names
