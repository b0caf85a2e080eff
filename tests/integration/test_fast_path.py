"""``mealworker_claim_next`` (supabase/migrations/20240107000000_fast_path.sql): claim, and
optionally complete, in one call; a claim-only call commits without waiting for the WAL flush.
Against a real PostgreSQL, as the other contract tests."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.queue import ClaimedJob, Completion, Queue

Conn = psycopg.Connection[dict[str, Any]]


def enqueue(conn: Conn, count: int, job_type: str = "ping") -> list[int]:
    rows = conn.execute(
        "select * from public.mealworker_enqueue_jobs(%s, %s)",
        (job_type, Jsonb([{"i": i} for i in range(count)])),
    ).fetchall()
    return [int(next(iter(r.values()))) for r in rows]


def claim_next(conn: Conn, limit: int, done: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    return conn.execute(
        "select * from public.mealworker_claim_next('w1', array['ping'], %s, 60,"
        " %s::bigint[], %s::uuid[], %s::jsonb[])",
        (
            limit,
            [d["id"] for d in done],
            [d["lease_token"] for d in done],
            [Jsonb({"ok": d["id"]}) for d in done],
        ),
    ).fetchall()


def test_claims_like_claim_jobs_with_fresh_leases(conn: Conn) -> None:
    ids = enqueue(conn, 3)
    rows = claim_next(conn, 2)
    assert [r["id"] for r in rows] == ids[:2]
    assert all(r["lease_token"] is not None and r["completed"] is None for r in rows)
    states = conn.execute(
        "select id, status, attempts, locked_by from public.background_jobs order by id"
    ).fetchall()
    assert [(s["status"], s["attempts"], s["locked_by"]) for s in states] == [
        ("processing", 1, "w1"),
        ("processing", 1, "w1"),
        ("pending", 0, None),
    ]
    events = conn.execute(
        "select event from public.background_job_events where event = 'claimed'"
    ).fetchall()
    assert len(events) == 2  # the statement-level trigger wrote them, as for claim_jobs


def test_completes_only_held_leases_then_claims(conn: Conn) -> None:
    enqueue(conn, 4)
    held = claim_next(conn, 2)
    forged = {"id": held[1]["id"], "lease_token": uuid.uuid4()}
    rows = claim_next(conn, 5, [held[0], forged])
    completed = [r["completed"] for r in rows if r["id"] is None]
    claimed = [r["id"] for r in rows if r["id"] is not None]
    assert completed == [held[0]["id"]]  # the forged token is refused
    assert len(claimed) == 2
    job = conn.execute(
        "select status, result from public.background_jobs where id = %s", (held[0]["id"],)
    ).fetchone()
    assert job == {"status": "completed", "result": {"ok": held[0]["id"]}}
    refused = conn.execute(
        "select status from public.background_jobs where id = %s", (held[1]["id"],)
    ).fetchone()
    assert refused == {"status": "processing"}
    lost = conn.execute(
        "select job_id from public.background_job_events where event = 'lease_lost'"
    ).fetchall()
    assert [r["job_id"] for r in lost] == [held[1]["id"]]


def test_only_a_claim_only_call_commits_asynchronously(conn: Conn) -> None:
    enqueue(conn, 2)
    with conn.transaction():
        held = claim_next(conn, 1)
        setting = conn.execute("select current_setting('synchronous_commit') as s").fetchone()
    assert setting == {"s": "off"}
    with conn.transaction():
        claim_next(conn, 1, held)
        setting = conn.execute("select current_setting('synchronous_commit') as s").fetchone()
    assert setting == {"s": "on"}  # a completion is durable before the worker moves on
    assert conn.execute("show synchronous_commit").fetchone() == {"synchronous_commit": "on"}


def test_not_callable_by_app_users(conn: Conn) -> None:
    for role in ("anon", "authenticated"):
        with conn.transaction(force_rollback=True):
            conn.execute(f"set local role {role}")
            with pytest.raises(errors.InsufficientPrivilege):
                claim_next(conn, 1)


def test_queue_claim_next_completes_and_claims(database_url: str, conn: Conn) -> None:
    enqueue(conn, 3)

    async def scenario() -> tuple[set[int], list[ClaimedJob], list[ClaimedJob]]:
        db = await PostgresDatabase(database_url, min_size=1, max_size=1).open()
        try:
            queue = Queue(db)
            _, first = await queue.claim_next("w1", ["ping"], 1, 60)
            written, more = await queue.claim_next(
                "w1", ["ping"], 5, 60, [Completion(first[0], {"x": 1})]
            )
            return written, first, more
        finally:
            await db.close()

    written, first, more = asyncio.run(scenario())
    assert written == {first[0].id}
    assert len(more) == 2
    assert all(job.lease_token for job in more)


def test_queue_falls_back_to_two_calls_on_an_older_schema(database_url: str, conn: Conn) -> None:
    conn.execute(
        "drop function public.mealworker_claim_next"
        "(text, text[], int, double precision, bigint[], uuid[], jsonb[])"
    )
    enqueue(conn, 2)

    async def scenario() -> tuple[set[int], int]:
        db = await PostgresDatabase(database_url, min_size=1, max_size=1).open()
        try:
            queue = Queue(db)
            _, first = await queue.claim_next("w1", ["ping"], 1, 60)
            written, more = await queue.claim_next(
                "w1", ["ping"], 5, 60, [Completion(first[0], None)]
            )
            return written, len(more)
        finally:
            await db.close()

    written, claimed = asyncio.run(scenario())
    assert len(written) == 1
    assert claimed == 1


def claim_buffers(conn: Conn, limit: int) -> int:
    """Shared buffers one claim of ``limit`` jobs touches, nested statements included: a
    measure of the plan's work that does not depend on the machine's speed."""
    plan = conn.execute(
        "explain (analyze, buffers, costs off, timing off) select * from "
        "public.mealworker_claim_jobs('w1', array['ping'], %s, 60)",
        (limit,),
    ).fetchall()
    first = next(str(next(iter(row.values()))) for row in plan if "shared hit=" in str(row))
    return int(first.split("shared hit=")[1].split()[0])


def test_a_claim_right_after_a_bulk_load_uses_the_primary_key(conn: Conn) -> None:
    """20,000 jobs enqueued at once, claimed before autovacuum has gathered statistics: the
    claim must not walk the claim index for its update (60,000 buffers instead of 11,000,
    130 ms instead of 10 for 500 jobs here). Compared with the same claim after ANALYZE."""
    for _ in range(4):
        enqueue(conn, 5000)
    cold = claim_buffers(conn, 500)
    conn.execute("analyze public.background_jobs")
    analyzed = claim_buffers(conn, 500)
    assert cold < 2 * analyzed, (cold, analyzed)
