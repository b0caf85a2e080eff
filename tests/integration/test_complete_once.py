"""A completion reads each of its jobs once, and looks for lost leases only when one was lost
(supabase/migrations/20240114000000_complete_once.sql)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.helpers.sql import claim, complete, insert_pending

Conn = psycopg.Connection[dict[str, Any]]

BATCH = 200


def job_rows_read(conn: Conn) -> int:
    """Rows of ``background_jobs`` this transaction has read, by index or by scan."""
    row = conn.execute(
        "select coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) as n"
        " from pg_stat_xact_user_tables where relid = 'public.background_jobs'::regclass"
    ).fetchone()
    assert row is not None
    return int(row["n"])


def lost_events(conn: Conn) -> list[int]:
    rows = conn.execute(
        "select job_id from public.background_job_events where event = 'lease_lost' order by id"
    ).fetchall()
    return [r["job_id"] for r in rows]


def test_a_batch_whose_leases_all_hold_reads_each_job_once(conn: Conn) -> None:
    # Other jobs in the table, so that a plan scanning it would read thousands of rows.
    insert_pending(conn, "someone_elses_type", 5_000)
    insert_pending(conn, "ping", BATCH)
    conn.execute("analyze public.background_jobs")
    with conn.transaction(force_rollback=True):
        held = claim(conn, types=("ping",), limit=BATCH)
        assert len(held) == BATCH
        before = job_rows_read(conn)
        done = complete(
            conn, [j["id"] for j in held], [j["lease_token"] for j in held], [{}] * BATCH
        )
        read = job_rows_read(conn) - before
        assert done == sorted(j["id"] for j in held)
        assert lost_events(conn) == []
    # Before, the search for lost leases probed every job a second time (or scanned the table).
    assert read <= BATCH, read


def test_a_lost_lease_in_a_batch_is_still_recorded(conn: Conn) -> None:
    insert_pending(conn, "ping", 3)
    held = claim(conn, types=("ping",), limit=3)
    held.sort(key=lambda j: j["id"])
    ids = [j["id"] for j in held]
    tokens = [j["lease_token"] for j in held]
    tokens[1] = uuid.uuid4()  # another worker's lease, as after a stale requeue
    assert complete(conn, ids, tokens, [{}, {}, {}]) == [ids[0], ids[2]]
    assert lost_events(conn) == [ids[1]]
    detail = conn.execute(
        "select detail from public.background_job_events where event = 'lease_lost'"
    ).fetchone()
    assert detail == {"detail": {"call": "complete", "status": "processing", "locked_by": "w1"}}
    events = conn.execute(
        "select job_id from public.background_job_events where event = 'completed' order by id"
    ).fetchall()
    assert [e["job_id"] for e in events] == [ids[0], ids[2]]


def test_a_job_given_twice_is_completed_once(conn: Conn) -> None:
    """The same job under its lost lease and its current one (re-claimed by this worker after
    a stale requeue): the current lease completes it, and nothing is lost."""
    insert_pending(conn, "ping", 1)
    (job,) = claim(conn, types=("ping",), limit=1)
    stale = uuid.uuid4()
    assert complete(conn, [job["id"], job["id"]], [stale, job["lease_token"]], [{}, {}]) == [
        job["id"]
    ]
    assert lost_events(conn) == []


def test_an_unknown_job_is_ignored(conn: Conn) -> None:
    assert complete(conn, [987_654], [uuid.uuid4()], [{}]) == []
    assert lost_events(conn) == []
