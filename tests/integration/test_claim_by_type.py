"""The claim reads only the pending jobs of the types it asks for
(supabase/migrations/20240111000000_claim_by_type.sql): a backlog of another type costs it
nothing, the claim order across types is unchanged, and an operator's own index is never
dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import pg
from tests.helpers.sql import claim, insert_pending

Conn = psycopg.Connection[dict[str, Any]]

MIGRATION = (
    Path(__file__).parents[2] / "supabase" / "migrations" / "20240111000000_claim_by_type.sql"
)
FIRST_INDEX = (
    "create index background_jobs_claim_idx"
    " on public.background_jobs (priority desc, run_at, id) where status = 'pending'"
)


def claim_indexes(conn: Conn) -> dict[str, str]:
    rows = conn.execute(
        "select indexname, indexdef from pg_indexes"
        " where schemaname = 'public' and tablename = 'background_jobs'"
        " and indexname like 'background_jobs_claim%'"
    ).fetchall()
    return {r["indexname"]: r["indexdef"] for r in rows}


def rows_read_by_claim(conn: Conn, types: tuple[str, ...], limit: int) -> tuple[int, int]:
    """(jobs claimed, job rows the claim read through an index), counted by PostgreSQL for
    this transaction alone; rolled back, so the jobs stay pending."""
    with conn.transaction(force_rollback=True):
        claimed = len(claim(conn, types=types, limit=limit))
        row = conn.execute(
            "select coalesce(idx_tup_fetch, 0) as fetched from pg_stat_xact_user_tables"
            " where relid = 'public.background_jobs'::regclass"
        ).fetchone()
    assert row is not None
    return claimed, int(row["fetched"])


def test_the_claim_index_leads_with_the_job_type(conn: Conn) -> None:
    assert claim_indexes(conn) == {
        "background_jobs_claim_by_type_idx": "CREATE INDEX background_jobs_claim_by_type_idx"
        " ON public.background_jobs USING btree (job_type, priority DESC, run_at, id)"
        " WHERE (status = 'pending'::text)"
    }


def test_a_backlog_of_another_type_is_not_read(conn: Conn) -> None:
    insert_pending(conn, "someone_elses", 20_000, seconds_ago=10_000)  # older: first in line
    insert_pending(conn, "ping", 50)
    conn.execute("analyze public.background_jobs")

    claimed, fetched = rows_read_by_claim(conn, ("ping", "generate_meal_plan"), limit=10)

    assert claimed == 10
    # the 10 claimed, each read by the claim and again by its update; never the 20,000 (the
    # claim before this migration fetched every one of them, and fails here)
    assert fetched < 100, fetched


def test_the_claim_order_holds_across_types(conn: Conn) -> None:
    """Highest priority first, then the oldest run_at, then the id, whatever the type."""
    rows = conn.execute(
        "insert into public.background_jobs (job_type, payload, priority, run_at)"
        " values ('ping', '{}', 0, now() - interval '5 minutes'),"
        "        ('generate_meal_plan', '{}', 0, now() - interval '10 minutes'),"
        "        ('ping', '{}', 3, now() - interval '1 minute'),"
        "        ('generate_meal_plan', '{}', 3, now() - interval '2 minutes'),"
        "        ('ping', '{}', 0, now() + interval '1 hour')"
        " returning id"
    ).fetchall()
    ids = [r["id"] for r in rows]

    first = claim(conn, types=("ping", "generate_meal_plan"), limit=3)
    rest = claim(conn, types=("ping", "generate_meal_plan", "ping"), limit=10)

    assert [r["id"] for r in first] == [ids[3], ids[2], ids[1]]
    assert [r["id"] for r in rest] == [ids[0]]  # the future job waits; a repeated type is fine


def test_a_claim_for_no_types_claims_nothing(conn: Conn) -> None:
    insert_pending(conn, "ping", 3)
    assert claim(conn, types=(), limit=10) == []


@pytest.fixture
def conn_then(pg_server_url: str) -> Iterator[Conn]:
    """A database migrated up to this migration and no further: the schema it was written for
    and is applied again to (a later migration changed the result of the claim it replaces)."""
    with pg.migrated_through(pg_server_url, MIGRATION.name.split("_")[0]) as c:
        yield c


def test_an_operators_index_of_that_name_is_kept(conn_then: Conn) -> None:
    conn = conn_then
    conn.execute("drop index public.background_jobs_claim_by_type_idx")
    conn.execute(
        "create index background_jobs_claim_idx"
        " on public.background_jobs (priority desc, run_at) where status = 'pending'"
    )
    conn.execute(MIGRATION.read_text())
    assert set(claim_indexes(conn)) == {
        "background_jobs_claim_idx",
        "background_jobs_claim_by_type_idx",
    }
    assert "(priority DESC, run_at)" in claim_indexes(conn)["background_jobs_claim_idx"]


def test_the_first_migrations_index_is_replaced(conn_then: Conn) -> None:
    conn = conn_then
    conn.execute("drop index public.background_jobs_claim_by_type_idx")
    conn.execute(FIRST_INDEX)
    conn.execute(MIGRATION.read_text())
    conn.execute(MIGRATION.read_text())  # and applying it twice changes nothing
    assert set(claim_indexes(conn)) == {"background_jobs_claim_by_type_idx"}
