"""The claim's and the completion's events from the new rows alone
(supabase/migrations/20240109000000_event_fast_path.sql): the same events as the full trigger
path, and the full path wherever the announced transition could be wrong."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[dict[str, Any]]

EVENT_FIELDS = "event, job_type, worker_id, attempt, detail"


def enqueue(conn: Conn, count: int, job_type: str = "ping") -> list[int]:
    rows = conn.execute(
        "select j as id from public.mealworker_enqueue_jobs(%s, %s) as j",
        (job_type, Jsonb([{"i": i} for i in range(count)])),
    ).fetchall()
    return [int(r["id"]) for r in rows]


def events_of(conn: Conn, job_ids: list[int]) -> list[dict[str, Any]]:
    return conn.execute(
        f"select job_id, {EVENT_FIELDS} from public.background_job_events"
        " where job_id = any(%s) and event <> 'enqueued' order by id",
        (job_ids,),
    ).fetchall()


def claim_and_complete(conn: Conn, job_type: str, limit: int) -> list[int]:
    held = conn.execute(
        "select id, lease_token from public.mealworker_claim_jobs('w1', array[%s], %s, 60)",
        (job_type, limit),
    ).fetchall()
    conn.execute(
        "select public.mealworker_complete_jobs(%s::bigint[], %s::uuid[], %s::jsonb[])",
        ([h["id"] for h in held], [h["lease_token"] for h in held], [Jsonb({})] * len(held)),
    )
    return [int(h["id"]) for h in held]


def test_claim_and_completion_write_the_events_the_full_path_writes(conn: Conn) -> None:
    enqueue(conn, 3)
    fast = claim_and_complete(conn, "ping", 3)
    slow_ids = enqueue(conn, 3, "pong")
    # The same two transitions by plain updates, which always take the full path.
    conn.execute(
        "update public.background_jobs set status = 'processing', attempts = attempts + 1,"
        " locked_by = 'w1', lease_token = gen_random_uuid(), started_at = now()"
        " where id = any(%s)",
        (slow_ids,),
    )
    conn.execute(
        "update public.background_jobs set status = 'completed', lease_token = null,"
        " lease_expires_at = null, finished_at = now() where id = any(%s)",
        (slow_ids,),
    )

    def shape(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r["event"], r["worker_id"], r["attempt"], r["detail"]) for r in rows]

    fast_events = events_of(conn, fast)
    assert shape(fast_events) == shape(events_of(conn, slow_ids))
    assert [(r["job_id"], r["event"]) for r in fast_events] == [
        *((i, "claimed") for i in fast),
        *((i, "completed") for i in fast),
    ]
    assert fast_events[0]["detail"] == {"from": "pending", "to": "processing"}


def test_the_announcement_is_consumed_by_its_own_statement(conn: Conn) -> None:
    enqueue(conn, 1)
    with conn.transaction():
        conn.execute("select * from public.mealworker_claim_jobs('w1', array['ping'], 1, 60)")
        left = conn.execute("select current_setting('mealworker.transition', true) as t").fetchone()
    assert left == {"t": ""}


def test_a_stale_announcement_is_never_trusted(conn: Conn) -> None:
    (job,) = enqueue(conn, 1)
    with conn.transaction():
        # As if a claim announced itself and its trigger never ran (replication role, say):
        # the next statement of the transaction must still get its own, true events.
        conn.execute(
            "select set_config('mealworker.transition',"
            " 'claimed/pending/processing/' || statement_timestamp()::text, true)"
        )
        conn.execute("update public.background_jobs set status = 'cancelled' where id = %s", (job,))
    assert [(e["event"], e["detail"]) for e in events_of(conn, [job])] == [
        ("cancelled", {"from": "pending", "to": "cancelled"})
    ]


def test_a_nested_update_gets_the_full_path(conn: Conn) -> None:
    claimed, bystander = enqueue(conn, 2)
    # An app's own trigger that touches another job while the claim runs (trigger depth 2 for
    # the nested statement's event trigger, in the claim's statement).
    conn.execute(
        f"""
        create function public.test_touch_bystander() returns trigger language plpgsql as $$
        begin
          update public.background_jobs set priority = priority + 1
           where id = {int(bystander)} and new.status = 'processing';
          return null;
        end $$;
        create trigger test_touch_bystander after update on public.background_jobs
          for each row when (pg_trigger_depth() = 0)
          execute function public.test_touch_bystander();
        """
    )
    rows = conn.execute(
        "select id from public.mealworker_claim_jobs('w1', array['ping'], 1, 60)"
    ).fetchall()
    assert [r["id"] for r in rows] == [claimed]
    assert [e["event"] for e in events_of(conn, [claimed])] == ["claimed"]
    assert events_of(conn, [bystander]) == []  # a priority change has no event
