"""``supabase/schemas/`` is the schema the migrations make: same catalogue, object by object."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mealplan_cli.core.db.migrations import apply_migrations
from tests.helpers.pg import create_empty, drop, with_database

SCHEMAS = Path(__file__).resolve().parents[2] / "supabase" / "schemas"
SCHEMA_NAMES = ("public", "mealworker_private", "auth")
# The runner's ledger and its index: made by `migrate` itself, not by a migration.
LEDGER = "'mealworker_private.migrations%%'"

# Each query lists one kind of object of our schemas as text rows that do not depend on oids or
# creation order: definitions as PostgreSQL prints them, privileges sorted.
CATALOGUE: dict[str, str] = {
    "relations": """
        select n.nspname || '.' || c.relname, c.relkind::text, c.relrowsecurity::text,
               c.relforcerowsecurity::text, coalesce(c.reloptions::text, ''),
               coalesce((select string_agg(a::text, ',' order by a::text)
                           from unnest(c.relacl) a), '')
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = any(%(schemas)s) and not (n.nspname || '.' || c.relname) like {LEDGER}
    """,
    "columns": """
        select c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull::text, a.attidentity::text, a.attgenerated::text,
               coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
               coalesce(col_description(c.oid, a.attnum), '')
          from pg_attribute a
          join pg_class c on c.oid = a.attrelid
          join pg_namespace n on n.oid = c.relnamespace
          left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
         where n.nspname = any(%(schemas)s) and a.attnum > 0 and not a.attisdropped
           and not (n.nspname || '.' || c.relname) like {LEDGER}
    """,
    "constraints": """
        select c.conrelid::regclass::text || '.' || c.conname, pg_get_constraintdef(c.oid)
          from pg_constraint c join pg_namespace n on n.oid = c.connamespace
         where n.nspname = any(%(schemas)s) and not c.conrelid::regclass::text like {LEDGER}
    """,
    "indexes": """
        select indexname, indexdef from pg_indexes
         where schemaname = any(%(schemas)s) and not (schemaname || '.' || tablename) like {LEDGER}
    """,
    "triggers": """
        select tgname, pg_get_triggerdef(t.oid)
          from pg_trigger t join pg_class c on c.oid = t.tgrelid
          join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = any(%(schemas)s) and not t.tgisinternal
    """,
    "policies": """
        select schemaname || '.' || tablename || '.' || policyname, permissive, roles::text,
               cmd, coalesce(qual, ''), coalesce(with_check, '')
          from pg_policies where schemaname = any(%(schemas)s)
    """,
    "functions": """
        select p.oid::regprocedure::text, pg_get_functiondef(p.oid),
               coalesce((select string_agg(a::text, ',' order by a::text)
                           from unnest(p.proacl) a), '')
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = any(%(schemas)s)
    """,
    "views": """
        select schemaname || '.' || viewname, definition from pg_views
         where schemaname = any(%(schemas)s)
    """,
    "schemas": """
        select nspname, coalesce((select string_agg(a::text, ',' order by a::text)
                                    from unnest(nspacl) a), '')
          from pg_namespace where nspname = any(%(schemas)s)
    """,
}


def catalogue(url: str) -> dict[str, list[tuple[str, ...]]]:
    with psycopg.connect(url) as conn:
        return {
            kind: sorted(
                conn.execute(
                    query.replace("{LEDGER}", LEDGER), {"schemas": list(SCHEMA_NAMES)}
                ).fetchall()
            )
            for kind, query in CATALOGUE.items()
        }


@pytest.fixture
def two_databases(pg_server_url: str) -> Iterator[tuple[str, str]]:
    names = [create_empty(pg_server_url), create_empty(pg_server_url)]
    yield with_database(pg_server_url, names[0]), with_database(pg_server_url, names[1])
    for name in names:
        drop(pg_server_url, name)


@pytest.mark.slow
def test_the_declarative_schema_is_what_the_migrations_make(
    two_databases: tuple[str, str],
) -> None:
    migrated, declared = two_databases

    async def migrate() -> None:
        async with await psycopg.AsyncConnection.connect(migrated, autocommit=True) as conn:
            await apply_migrations(conn, prior_schema=None)

    asyncio.run(migrate())
    with psycopg.connect(declared, autocommit=True) as conn:
        for path in sorted(SCHEMAS.glob("*.sql")):
            conn.execute(path.read_text(encoding="utf-8").encode())

    want, got = catalogue(migrated), catalogue(declared)
    for kind in CATALOGUE:
        missing = sorted(set(want[kind]) - set(got[kind]))
        extra = sorted(set(got[kind]) - set(want[kind]))
        assert (missing, extra) == ([], []), (
            f"supabase/schemas/ and the migrations disagree on {kind}: run "
            f"`python -m scripts.declarative_schema`.\nonly in the migrations: {missing}\n"
            f"only in supabase/schemas/: {extra}"
        )
    assert want["functions"], "the catalogue query found no functions: it cannot fail"
