"""The queue's SQL knows jobs only; meal plans follow their jobs by the domain's triggers
(supabase/migrations/20240119000000_generic_core.sql).

The queue's functions are read back from the migrated database and must not name a meal plan
or OpenAI; a job of another type lives and dies without a write to ``meal_plans``; every job
keeps its result and progress on its row, while a plan is still stored once; and the plan row
follows its job through every transition exactly as the queue's functions used to write it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.db.rest import RestDatabase
from mealplan_cli.core.queue import QUEUE_FUNCTIONS, Queue
from mealplan_cli.core.worker import Worker, WorkerConfig
from scripts.declarative_schema import MEAL_PLAN_FUNCTIONS
from tests.fakes.postgrest_server import FakePostgrest
from tests.helpers import pg
from tests.helpers.batches import finishing_together
from tests.helpers.sql import Conn, Row, call, claim, complete

REQUEST = {"days": 1, "meals": ["lunch", "dinner"], "calories": 2000}
MIGRATION = (
    Path(__file__).parents[2] / "supabase" / "migrations" / "20240119000000_generic_core.sql"
)
DOMAIN_WORDS = ("meal_plan", "openai")


def definitions(conn: Conn, names: frozenset[str]) -> dict[str, str]:
    """Each function's whole definition as PostgreSQL prints it (signature, result, body)."""
    rows = conn.execute(
        "select p.proname, pg_get_functiondef(p.oid) as definition"
        "  from pg_proc p where p.pronamespace = 'public'::regnamespace"
        "   and p.proname = any(%s)",
        (sorted(names),),
    ).fetchall()
    return {row["proname"]: row["definition"] for row in rows}


def test_no_queue_function_names_a_meal_plan_or_openai(conn: Conn) -> None:
    found = definitions(conn, QUEUE_FUNCTIONS)
    assert set(found) == QUEUE_FUNCTIONS, "every function listed exists, once"
    knowing = {
        name: [word for word in DOMAIN_WORDS if word in text.lower()]
        for name, text in found.items()
        if any(word in text.lower() for word in DOMAIN_WORDS)
    }
    assert knowing == {}


def test_every_function_is_the_queues_or_a_domains(conn: Conn) -> None:
    rows = conn.execute(
        "select p.proname from pg_proc p where p.pronamespace = 'public'::regnamespace"
        " and p.proname like 'mealworker%%'"
    ).fetchall()
    unlisted = {
        row["proname"]
        for row in rows
        if row["proname"] not in QUEUE_FUNCTIONS | MEAL_PLAN_FUNCTIONS
        and not row["proname"].startswith("mealworker_budget_")
    }
    assert unlisted == set()
    assert not QUEUE_FUNCTIONS & MEAL_PLAN_FUNCTIONS


def test_the_migration_applies_again_and_keeps_the_grants(pg_server_url: str) -> None:
    with pg.migrated_through(pg_server_url, MIGRATION.name.split("_")[0]) as conn:
        applies_again_and_keeps_the_grants(conn)


def applies_again_and_keeps_the_grants(conn: Conn) -> None:
    def catalogue() -> list[Row]:
        return conn.execute(
            "select p.proname, pg_get_function_result(p.oid) as result,"
            " coalesce(p.proacl::text, '') as acl"
            " from pg_proc p where p.pronamespace = 'public'::regnamespace"
            " and p.proname like 'mealworker%%' order by 1"
        ).fetchall()

    before = catalogue()
    conn.execute(MIGRATION.read_text(encoding="utf-8"))
    assert catalogue() == before
    claimed = conn.execute(
        "select has_function_privilege('service_role', 'public.mealworker_claim_next("
        "text, text[], int, double precision, bigint[], uuid[], jsonb[])', 'execute') as service,"
        " has_function_privilege('anon', 'public.mealworker_claim_next("
        "text, text[], int, double precision, bigint[], uuid[], jsonb[])', 'execute') as anon"
    ).fetchone()
    assert claimed == {"service": True, "anon": False}


# --- calls as the worker makes them ----------------------------------------------------------


def enqueue_ping(conn: Conn) -> int:
    (row,) = call(conn, "mealworker_enqueue_jobs", p_job_type="ping", p_payloads=Jsonb([{}]))
    return int(row["mealworker_enqueue_jobs"])


def enqueue_plan(conn: Conn) -> Row:
    (row,) = call(conn, "mealworker_enqueue_meal_plan", p_request=Jsonb(REQUEST))
    return row


def job(conn: Conn, job_id: int) -> Row:
    row = conn.execute("select * from public.background_jobs where id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def plan(conn: Conn, plan_id: uuid.UUID) -> Row:
    row = conn.execute(
        "select status, plan, usage, error, progress, completed_at is not null as completed,"
        " days from public.meal_plans where id = %s",
        (plan_id,),
    ).fetchone()
    assert row is not None
    return row


def lease(conn: Conn, job_id: int) -> uuid.UUID:
    token = job(conn, job_id)["lease_token"]
    assert isinstance(token, uuid.UUID)
    return token


def progress(conn: Conn, job_id: int, value: dict[str, Any]) -> bool:
    (row,) = call(
        conn,
        "mealworker_report_progress",
        p_job_id=job_id,
        p_lease_token=lease(conn, job_id),
        p_progress=Jsonb(value),
    )
    return bool(row["mealworker_report_progress"])


def fail(conn: Conn, job_id: int, error: str, *, retryable: bool) -> str:
    (row,) = call(
        conn,
        "mealworker_fail_job",
        p_job_id=job_id,
        p_lease_token=lease(conn, job_id),
        p_error=error,
        p_retryable=retryable,
        p_backoff_base_seconds=0,
    )
    return str(row["mealworker_fail_job"])


def release(conn: Conn, job_id: int) -> int:
    (row,) = call(
        conn,
        "mealworker_release_jobs",
        p_worker_id="w1",
        p_job_ids=[job_id],
        p_lease_tokens=[lease(conn, job_id)],
    )
    return int(row["mealworker_release_jobs"])


def runnable(conn: Conn, job_id: int) -> None:
    """A retry's backoff over (an update that leaves the status alone: the plan is not told)."""
    conn.execute("update public.background_jobs set run_at = now() where id = %s", (job_id,))


# --- a job of another type -------------------------------------------------------------------


def refuse_every_plan_write(conn: Conn) -> None:
    """The app's guard: any statement that writes ``meal_plans``, even of no row, is refused."""
    conn.execute(
        "create function public.app_no_plans() returns trigger language plpgsql as $$"
        " begin raise exception 'meal_plans written' using errcode = 'P0001'; end $$;"
        " create trigger app_no_plans before insert or update or delete on public.meal_plans"
        " for each statement execute function public.app_no_plans()"
    )


def test_a_job_of_another_type_lives_without_a_write_to_meal_plans(conn: Conn) -> None:
    job_id = enqueue_ping(conn)
    refuse_every_plan_write(conn)
    claimed = call(conn, "mealworker_claim_next", p_worker_id="w", p_job_types=["ping"], p_limit=1)
    assert [r["id"] for r in claimed] == [job_id]
    assert progress(conn, job_id, {"done": 1})
    assert fail(conn, job_id, "busy", retryable=True) == "pending"
    runnable(conn, job_id)
    assert len(claim(conn, types=("ping",))) == 1
    assert release(conn, job_id) == 1
    assert len(claim(conn, types=("ping",), lease=0.01)) == 1
    time.sleep(0.05)
    assert call(conn, "mealworker_requeue_stale") == [{"job_id": job_id, "status": "pending"}]
    assert len(call(conn, "mealworker_claim_job", p_job_id=job_id, p_worker_id="w")) == 1
    call(conn, "mealworker_cancel_jobs", p_job_ids=[job_id])  # asks its worker to stop
    assert fail(conn, job_id, "stopped", retryable=False) == "cancelled"
    assert len(call(conn, "mealworker_requeue_jobs", p_job_ids=[job_id])) == 1
    call(conn, "mealworker_cancel_jobs", p_job_ids=[job_id])
    call(conn, "mealworker_queue_stats")
    assert job(conn, job_id)["status"] == "cancelled"

    # Only a completion runs the plans' update, of no row here: an app refusing every plan
    # write refuses every completion, which is how a worker tells that from one bad plan.
    with pytest.raises(errors.RaiseException, match="meal_plans written"):
        complete(conn, [], [], [])


# --- results and progress --------------------------------------------------------------------


def test_every_job_keeps_its_result_and_progress_and_a_plan_is_stored_once(conn: Conn) -> None:
    ping = enqueue_ping(conn)
    enqueued = enqueue_plan(conn)
    plan_job, plan_id = enqueued["job_id"], enqueued["meal_plan_id"]
    held = {r["id"]: r["lease_token"] for r in claim(conn)}
    assert progress(conn, ping, {"done": 2, "total": 3})
    assert progress(conn, plan_job, {"stage": "days", "done": 1})
    assert job(conn, ping)["progress"] == {"done": 2, "total": 3}
    assert job(conn, plan_job)["progress"] == {"stage": "days", "done": 1}
    assert plan(conn, plan_id)["progress"] == {"stage": "days", "done": 1}

    made = {"plan": {"days": ["one"]}, "usage": {"input_tokens": 7}}
    done = complete(conn, [ping, plan_job], [held[ping], held[plan_job]], [{"pong": 1}, made])
    assert done == [ping, plan_job]
    assert job(conn, ping)["result"] == {"pong": 1}
    stored = plan(conn, plan_id)
    assert (stored["status"], stored["plan"], stored["usage"]) == (
        "completed",
        made["plan"],
        made["usage"],
    )
    assert job(conn, plan_job)["result"] is None  # the plan is kept once, in its row
    assert conn.execute(
        "select count(*) as n from public.background_jobs"
        " where meal_plan_id is not null and result is not null"
    ).fetchone() == {"n": 0}
    completed = conn.execute(
        "select job_id from public.background_job_events where event = 'completed' order by id"
    ).fetchall()
    assert [r["job_id"] for r in completed] == [ping, plan_job]  # one event each, as before


def test_a_lost_lease_saves_no_plan_and_a_plan_is_saved_once(conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    plan_job, plan_id = enqueued["job_id"], enqueued["meal_plan_id"]
    stale = claim(conn, lease=0.01)[0]["lease_token"]
    time.sleep(0.05)
    call(conn, "mealworker_requeue_stale")
    fresh = claim(conn)[0]["lease_token"]
    assert complete(conn, [plan_job], [stale], [{"plan": {"by": "stale"}}]) == []
    assert plan(conn, plan_id)["plan"] is None
    assert complete(conn, [plan_job], [fresh], [{"plan": {"by": "fresh"}}]) == [plan_job]
    assert complete(conn, [plan_job], [fresh], [{"plan": {"by": "again"}}]) == []
    assert plan(conn, plan_id)["plan"] == {"by": "fresh"}


def test_a_plan_job_completed_with_no_result_completes_its_plan(conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    plan_job, plan_id = enqueued["job_id"], enqueued["meal_plan_id"]
    claim(conn)
    done = conn.execute(
        "select * from public.mealworker_complete_jobs(array[%s]::bigint[], array[%s]::uuid[],"
        " array[null]::jsonb[])",
        (plan_job, lease(conn, plan_job)),
    ).fetchall()
    assert len(done) == 1
    stored = plan(conn, plan_id)
    assert (stored["status"], stored["plan"], stored["usage"], stored["completed"]) == (
        "completed",
        None,
        None,
        True,
    )


# --- the plan follows its job ----------------------------------------------------------------


def test_the_plan_follows_its_job_through_every_transition(conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    job_id, plan_id = enqueued["job_id"], enqueued["meal_plan_id"]
    day = {"number": 1}

    def expect(status: str, **values: Any) -> None:
        row = plan(conn, plan_id)
        assert row["status"] == status
        for name, value in values.items():
            assert row[name] == value, name

    expect("pending", error=None, progress={}, days=None)
    claim(conn)
    expect("generating")
    call(
        conn,
        "mealworker_report_days",
        p_job_id=job_id,
        p_lease_token=lease(conn, job_id),
        p_days=Jsonb({"1": day}),
    )
    assert progress(conn, job_id, {"stage": "days", "done": 1})
    expect("generating", progress={"stage": "days", "done": 1}, days={"1": day})

    assert fail(conn, job_id, "rate limited", retryable=True) == "pending"
    expect("pending", error="rate limited", progress={"stage": "days", "done": 1}, days={"1": day})
    runnable(conn, job_id)
    claim(conn)
    expect("generating", error="rate limited")  # a claim leaves the last error shown

    assert release(conn, job_id) == 1
    expect("pending", error="rate limited", days={"1": day})  # released: no error of its own

    claim(conn, lease=0.01)
    time.sleep(0.05)
    call(conn, "mealworker_requeue_stale")
    expect("pending", error="lease expired: worker w1 stopped heartbeating", days={"1": day})

    claim(conn)
    assert fail(conn, job_id, "bad request", retryable=False) == "failed"
    expect("failed", error="bad request", days=None)  # an ended plan keeps no days

    forced = call(conn, "mealworker_claim_job", p_job_id=job_id, p_worker_id="w2", p_force=True)
    assert len(forced) == 1
    expect("generating", plan=None, usage=None, error=None, progress={}, completed=False)
    assert job(conn, job_id)["progress"] is None

    made = {"plan": {"days": [day]}, "usage": {"input_tokens": 9}}
    assert complete(conn, [job_id], [lease(conn, job_id)], [made]) == [job_id]
    expect(
        "completed",
        plan=made["plan"],
        usage=made["usage"],
        error=None,
        progress={"stage": "done"},
        completed=True,
    )

    assert call(conn, "mealworker_requeue_jobs", p_job_ids=[job_id]) == []  # completed: kept
    expect("completed", plan=made["plan"], usage=made["usage"], completed=True)
    requeued = call(conn, "mealworker_requeue_jobs", p_job_ids=[job_id], p_statuses=["completed"])
    assert len(requeued) == 1
    expect("pending", plan=None, usage=None, error=None, progress={}, completed=False)

    claim(conn)
    assert progress(conn, job_id, {"stage": "outline"})
    assert fail(conn, job_id, "busy", retryable=True) == "pending"
    expect("pending", error="busy", progress={"stage": "outline"})
    assert len(call(conn, "mealworker_requeue_jobs", p_job_ids=[job_id])) == 1  # still waiting
    expect("pending", error=None, progress={})

    claim(conn)
    cancel = call(conn, "mealworker_cancel_jobs", p_job_ids=[job_id])
    assert cancel[0]["outcome"] == "cancel_requested"
    expect("generating")  # its worker stops it at its next heartbeat
    assert fail(conn, job_id, "cancelled by an operator", retryable=True) == "cancelled"
    expect("cancelled", error="cancelled by an operator")

    second = enqueue_plan(conn)
    assert call(conn, "mealworker_cancel_jobs", p_job_ids=[second["job_id"]])[0]["outcome"] == (
        "cancelled"
    )
    assert plan(conn, second["meal_plan_id"])["status"] == "cancelled"


# --- a refused plan fails its job alone ------------------------------------------------------


def check_plans(url: str) -> None:
    """The app's rule on its table: a saved plan has days (SQLSTATE 23514 otherwise)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "alter table public.meal_plans add constraint app_plan_has_days"
            " check (plan is null or plan ? 'days')"
        )


@asynccontextmanager
async def queue_over(url: str, rest: FakePostgrest | None) -> AsyncIterator[Queue]:
    db: PostgresDatabase | RestDatabase
    if rest is None:
        db = await PostgresDatabase(url).open()
    else:
        db = await RestDatabase(rest.base_url, SecretStr(rest.service_role_key)).open()
    try:
        yield Queue(db)
    finally:
        await db.close()


@pytest.mark.parametrize("transport", ["postgres", "rest"])
def test_a_plan_the_app_refuses_fails_its_job_alone_in_the_databases_words(
    database_url: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        plans = [str(enqueue_plan(conn)["meal_plan_id"]) for _ in range(3)]
    check_plans(database_url)
    bad = plans[1]

    async def main(rest: FakePostgrest | None) -> Any:
        async with queue_over(database_url, rest) as queue:
            config = WorkerConfig(concurrency=3, poll_interval=0.05, until_empty=True)
            worker = Worker(queue, finishing_together(3, bad), config)
            return await asyncio.wait_for(worker.run(), 60)

    with ExitStack() as stack, caplog.at_level(logging.INFO, logger="mealworker"):
        rest = stack.enter_context(FakePostgrest(database_url)) if transport == "rest" else None
        report = asyncio.run(main(rest))
    assert "a completion of 3 jobs was refused" in caplog.text  # one batch, saved row by row
    assert (report.completed, report.failed) == (2, 1)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "select p.id::text as plan_id, j.status, j.last_error, j.attempts, j.result,"
            " p.status as plan_status, p.error as plan_error, p.plan"
            " from public.background_jobs j join public.meal_plans p on p.id = j.meal_plan_id"
            " order by j.id"
        ).fetchall()
    assert [(r["plan_id"], r["status"], r["plan_status"]) for r in rows] == [
        (plans[0], "completed", "completed"),
        (bad, "failed", "failed"),
        (plans[2], "completed", "completed"),
    ]
    refused = rows[1]
    words = 'new row for relation "meal_plans" violates check constraint "app_plan_has_days"'
    for text in (refused["last_error"], refused["plan_error"]):
        assert words in text
        assert "SQLSTATE 23514" in text
    assert refused["attempts"] == 1  # the same plan would be refused again: not retried
    assert (refused["plan"], refused["result"]) == (None, None)
    assert [r["plan"] for r in rows if r["status"] == "completed"] == [{"days": []}] * 2
