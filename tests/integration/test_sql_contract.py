"""The queue contract: the SQL functions of supabase/migrations/, against a real PostgreSQL.

Every test gets a fresh database cloned from a template into which the migration was applied
once. Functions are called by name with named arguments, exactly as the worker calls them.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers.sql import Conn, Row, call, claim, complete

ROOT = Path(__file__).resolve().parents[2]
MIGRATION = ROOT / "supabase" / "migrations" / "20240101000000_create_background_jobs.sql"

TABLES = ("meal_plans", "background_jobs", "background_job_events", "workers", "image_cache")
STABLE_FUNCTIONS = {
    "mealworker_get_job",
    "mealworker_get_meal_plan",
    "mealworker_queue_stats",
    "mealworker_events_since",
    "mealworker_stale_jobs",
    "mealworker_recent_events",
}
CONTRACT_FUNCTIONS = {
    "mealworker_enqueue_meal_plan",
    "mealworker_enqueue_jobs",
    "mealworker_claim_jobs",
    "mealworker_claim_job",
    "mealworker_get_job",
    "mealworker_get_meal_plan",
    "mealworker_heartbeat",
    "mealworker_register_worker",
    "mealworker_stop_worker",
    "mealworker_report_progress",
    "mealworker_complete_jobs",
    "mealworker_fail_job",
    "mealworker_release_jobs",
    "mealworker_requeue_stale",
    "mealworker_requeue_jobs",
    "mealworker_cancel_jobs",
    "mealworker_queue_stats",
    "mealworker_events_since",
    "mealworker_image_cache_get",
    "mealworker_image_cache_put",
}


# --- fixtures --------------------------------------------------------------------------------


def connect(url: str) -> Conn:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@pytest.fixture(scope="module")
def server_url(pg_server_url: str) -> str:
    return pg_server_url


@pytest.fixture(scope="module")
def admin(server_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        yield conn


def drop_database(admin: psycopg.Connection[Any], name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def template_db(server_url: str, admin: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"mw_tpl_{uuid.uuid4().hex[:16]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with connect(make_conninfo(server_url, dbname=name)) as conn:
            conn.execute(MIGRATION.read_text(encoding="utf-8"))
        yield name
    finally:
        drop_database(admin, name)


@pytest.fixture
def db_url(server_url: str, admin: psycopg.Connection[Any], template_db: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex}"
    admin.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_db)
        )
    )
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        drop_database(admin, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[Conn]:
    with connect(db_url) as c:
        yield c


# --- calling the contract --------------------------------------------------------------------


def scalar(conn: Conn, function: str, **params: Any) -> Any:
    rows = call(conn, function, **params)
    assert len(rows) == 1
    return next(iter(rows[0].values()))


def enqueue_plan(conn: Conn, request: dict[str, Any] | None = None, **params: Any) -> Row:
    rows = call(
        conn, "mealworker_enqueue_meal_plan", p_request=Jsonb(request or {"days": 7}), **params
    )
    assert len(rows) == 1
    return rows[0]


def enqueue(conn: Conn, count: int = 1, job_type: str = "ping", **params: Any) -> list[int]:
    payloads = Jsonb([{"n": i} for i in range(count)])
    rows = call(conn, "mealworker_enqueue_jobs", p_job_type=job_type, p_payloads=payloads, **params)
    return [r["mealworker_enqueue_jobs"] for r in rows]


def claim_one(conn: Conn, **kwargs: Any) -> Row:
    rows = claim(conn, **kwargs)
    assert len(rows) == 1, rows
    return rows[0]


def claim_job(conn: Conn, job_id: int, worker: str = "w1", **params: Any) -> list[Row]:
    return call(conn, "mealworker_claim_job", p_job_id=job_id, p_worker_id=worker, **params)


def fail(
    conn: Conn, job_id: int, token: uuid.UUID, error: str, retryable: bool, **params: Any
) -> str | None:
    result: str | None = scalar(
        conn,
        "mealworker_fail_job",
        p_job_id=job_id,
        p_lease_token=token,
        p_error=error,
        p_retryable=retryable,
        **params,
    )
    return result


def progress(conn: Conn, job_id: int, token: uuid.UUID, value: dict[str, Any]) -> bool:
    result: bool = scalar(
        conn,
        "mealworker_report_progress",
        p_job_id=job_id,
        p_lease_token=token,
        p_progress=Jsonb(value),
    )
    return result


def heartbeat(
    conn: Conn,
    worker: str,
    ids: list[int],
    tokens: list[uuid.UUID],
    lease: float = 300,
    **params: Any,
) -> list[Row]:
    return call(
        conn,
        "mealworker_heartbeat",
        p_worker_id=worker,
        p_job_ids=ids,
        p_lease_tokens=tokens,
        p_lease_seconds=lease,
        **params,
    )


def release(conn: Conn, worker: str, ids: list[int], tokens: list[uuid.UUID]) -> int:
    result: int = scalar(
        conn, "mealworker_release_jobs", p_worker_id=worker, p_job_ids=ids, p_lease_tokens=tokens
    )
    return result


def get_job(conn: Conn, job_id: int) -> Row:
    rows = call(conn, "mealworker_get_job", p_job_id=job_id)
    assert len(rows) == 1
    return rows[0]


def job_row(conn: Conn, job_id: int) -> Row:
    row = conn.execute("select * from public.background_jobs where id = %s", [job_id]).fetchone()
    assert row is not None
    return row


def plan_row(conn: Conn, plan_id: uuid.UUID) -> Row:
    row = conn.execute("select * from public.meal_plans where id = %s", [plan_id]).fetchone()
    assert row is not None
    return row


def events(conn: Conn, job_id: int) -> list[Row]:
    return call(conn, "mealworker_events_since", p_job_id=job_id)


def event_names(conn: Conn, job_id: int) -> list[str]:
    return [e["event"] for e in events(conn, job_id)]


def seconds(conn: Conn, expression: str, job_id: int) -> float:
    query = sql.SQL("select extract(epoch from {})::float8 as s from public.background_jobs")
    row = conn.execute(
        query.format(sql.SQL(expression)) + sql.SQL(" where id = %s"), [job_id]
    ).fetchone()
    assert row is not None
    return float(row["s"])


def expire_lease(conn: Conn, job_id: int) -> None:
    conn.execute(
        "update public.background_jobs set lease_expires_at = now() - interval '1 second'"
        " where id = %s",
        [job_id],
    )


def requeue_stale(conn: Conn, **params: Any) -> list[Row]:
    return call(conn, "mealworker_requeue_stale", **params)


def drain_notifications(listener: psycopg.Connection[Any], wait: float = 0.3) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=wait)]


@contextmanager
def acting_as(conn: Conn, role: str, sub: uuid.UUID | None = None) -> Iterator[Conn]:
    """A transaction (always rolled back) under ``role``, as PostgREST runs a request."""
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        if sub is not None:
            claims = json.dumps({"sub": str(sub), "role": role})
            conn.execute("select set_config('request.jwt.claims', %s, true)", [claims])
        yield conn


# --- enqueue ---------------------------------------------------------------------------------


def test_enqueue_meal_plan_creates_the_plan_and_its_job(conn: Conn) -> None:
    user = uuid.uuid4()
    row = enqueue_plan(conn, {"days": 3}, p_user_id=user, p_priority=7, p_max_attempts=2)
    assert row["created"] is True

    plan = plan_row(conn, row["meal_plan_id"])
    assert plan["status"] == "pending"
    assert plan["user_id"] == user
    assert plan["request"] == {"days": 3}
    assert plan["progress"] == {}

    job = get_job(conn, row["job_id"])
    assert job["job_type"] == "generate_meal_plan"
    assert job["payload"] == {"meal_plan_id": str(row["meal_plan_id"]), "request": {"days": 3}}
    assert job["meal_plan_id"] == row["meal_plan_id"]
    assert (job["status"], job["priority"], job["attempts"], job["max_attempts"]) == (
        "pending",
        7,
        0,
        2,
    )
    assert event_names(conn, row["job_id"]) == ["enqueued"]


def test_enqueue_meal_plan_is_one_transaction(conn: Conn) -> None:
    with pytest.raises(errors.CheckViolation):
        enqueue_plan(conn, p_max_attempts=0)  # the job insert fails after the plan insert
    assert conn.execute("select count(*) as n from public.meal_plans").fetchone() == {"n": 0}


def test_idempotency_key_returns_the_existing_ids(conn: Conn) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    first = enqueue_plan(conn, p_user_id=user, p_idempotency_key="req-1")
    again = enqueue_plan(conn, {"days": 5}, p_user_id=user, p_idempotency_key="req-1")
    assert again == {**first, "created": False}

    assert enqueue_plan(conn, p_user_id=other, p_idempotency_key="req-1")["created"] is True
    assert enqueue_plan(conn, p_user_id=user, p_idempotency_key="req-2")["created"] is True
    # No user, no idempotency.
    assert enqueue_plan(conn, p_idempotency_key="req-1")["created"] is True
    assert enqueue_plan(conn, p_idempotency_key="req-1")["created"] is True

    counts = conn.execute(
        "select (select count(*) from public.meal_plans) as plans,"
        " (select count(*) from public.background_jobs) as jobs"
    ).fetchone()
    assert counts == {"plans": 5, "jobs": 5}
    assert plan_row(conn, first["meal_plan_id"])["request"] == {"days": 7}


def test_idempotency_key_is_race_safe(db_url: str) -> None:
    user = uuid.uuid4()
    with connect(db_url) as a, connect(db_url) as b, ThreadPoolExecutor(1) as pool:
        with a.transaction():
            first = enqueue_plan(a, p_user_id=user, p_idempotency_key="k")
            second_call = pool.submit(enqueue_plan, b, p_user_id=user, p_idempotency_key="k")
            time.sleep(0.3)
            assert not second_call.done(), "the second insert must wait for the first"
        second = second_call.result(timeout=10)
    assert first["created"] is True
    assert second == {**first, "created": False}


def test_enqueue_jobs_in_bulk(conn: Conn) -> None:
    started = time.perf_counter()
    ids = enqueue(conn, 5000, "ping", p_priority=2, p_max_attempts=3)
    elapsed = time.perf_counter() - started
    assert len(ids) == 5000
    assert ids == sorted(ids)
    assert len(set(ids)) == 5000
    assert elapsed < 5, f"bulk enqueue of 5,000 took {elapsed:.2f} s"

    rows = conn.execute(
        "select payload, priority, max_attempts, status from public.background_jobs order by id"
    ).fetchall()
    assert [r["payload"] for r in rows] == [{"n": i} for i in range(5000)]
    assert {(r["priority"], r["max_attempts"], r["status"]) for r in rows} == {(2, 3, "pending")}
    enqueued = conn.execute(
        "select count(*) as n from public.background_job_events where event = 'enqueued'"
    ).fetchone()
    assert enqueued == {"n": 5000}


# --- claim -----------------------------------------------------------------------------------


def test_claim_takes_priority_first_then_oldest_run_at(conn: Conn) -> None:
    now = datetime.now(UTC)
    [a] = enqueue(conn, 1, p_priority=0, p_run_at=now - timedelta(minutes=3))
    [b] = enqueue(conn, 1, p_priority=5, p_run_at=now - timedelta(minutes=1))
    [c] = enqueue(conn, 1, p_priority=5, p_run_at=now - timedelta(minutes=2))
    [d] = enqueue(conn, 1, p_priority=0, p_run_at=now - timedelta(minutes=4))
    [e] = enqueue(conn, 1, p_priority=-1, p_run_at=now - timedelta(minutes=9))

    assert [r["id"] for r in claim(conn, limit=3)] == [c, b, d]
    assert [r["id"] for r in claim(conn, limit=3)] == [a, e]
    assert claim(conn, limit=3) == []


def test_claim_respects_job_types_run_at_and_limit(conn: Conn) -> None:
    pings = enqueue(conn, 2, "ping")
    others = enqueue(conn, 2, "other")
    [later] = enqueue(conn, 1, "ping", p_run_at=datetime.now(UTC) + timedelta(hours=1))

    assert claim(conn, types=("ping",), limit=0) == []
    assert sorted(r["id"] for r in claim(conn, types=("ping",), limit=10)) == pings
    assert len(claim(conn, types=("other",), limit=1)) == 1
    assert len(claim(conn, types=("other", "ping"), limit=5)) == 1
    assert claim(conn, types=("other", "ping"), limit=5) == []
    assert get_job(conn, later)["status"] == "pending"
    assert {get_job(conn, i)["status"] for i in others} == {"processing"}


def test_claim_sets_the_lease_counts_the_attempt_and_starts_the_plan(conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    job = claim_one(conn, worker="worker-a", lease=60)
    assert job["id"] == enqueued["job_id"]
    assert job["attempts"] == 1
    assert isinstance(job["lease_token"], uuid.UUID)
    assert job["meal_plan_id"] == enqueued["meal_plan_id"]
    assert job["payload"]["meal_plan_id"] == str(enqueued["meal_plan_id"])

    stored = job_row(conn, job["id"])
    assert stored["status"] == "processing"
    assert stored["locked_by"] == "worker-a"
    assert stored["lease_token"] == job["lease_token"]
    assert stored["lease_expires_at"] == job["lease_expires_at"]
    assert seconds(conn, "lease_expires_at - started_at", job["id"]) == pytest.approx(60)
    assert plan_row(conn, enqueued["meal_plan_id"])["status"] == "generating"


def test_concurrent_claims_never_hand_out_a_job_twice(db_url: str, conn: Conn) -> None:
    ids = enqueue(conn, 2000, "ping")
    workers = 6
    barrier = threading.Barrier(workers)

    def work(n: int) -> list[int]:
        claimed: list[int] = []
        with connect(db_url) as c:
            barrier.wait(timeout=10)
            while rows := claim(c, worker=f"w{n}", types=("ping",), limit=25):
                claimed.extend(r["id"] for r in rows)
        return claimed

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(work, range(workers)))

    everything = [i for claimed in results for i in claimed]
    assert len(everything) == len(set(everything)) == 2000
    assert sorted(everything) == ids
    assert sum(1 for claimed in results if claimed) >= 2
    summary = conn.execute(
        "select count(*) filter (where status = 'processing' and attempts = 1) as ok,"
        " (select count(*) from public.background_job_events where event = 'claimed') as claimed"
        " from public.background_jobs"
    ).fetchone()
    assert summary == {"ok": 2000, "claimed": 2000}


# --- fencing and stale leases ----------------------------------------------------------------


def test_a_worker_that_lost_its_lease_can_change_nothing(conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    job_id, plan_id = enqueued["job_id"], enqueued["meal_plan_id"]
    stale = claim_one(conn, worker="worker-a", lease=0.05)
    time.sleep(0.1)
    assert requeue_stale(conn) == [{"job_id": job_id, "status": "pending"}]
    fresh = claim_one(conn, worker="worker-b")
    assert fresh["id"] == job_id
    assert fresh["attempts"] == 2
    assert fresh["lease_token"] != stale["lease_token"]

    old = stale["lease_token"]
    assert progress(conn, job_id, old, {"stage": "stale"}) is False
    assert complete(conn, [job_id], [old], [{"plan": {"by": "a"}}]) == []
    assert fail(conn, job_id, old, "boom", True) is None
    assert heartbeat(conn, "worker-a", [job_id], [old]) == [{"job_id": job_id, "reason": "lost"}]
    assert release(conn, "worker-a", [job_id], [old]) == 0

    job = job_row(conn, job_id)
    assert (job["status"], job["locked_by"], job["attempts"]) == ("processing", "worker-b", 2)
    assert job["lease_token"] == fresh["lease_token"]
    plan = plan_row(conn, plan_id)
    assert (plan["status"], plan["plan"], plan["progress"]) == ("generating", None, {})

    new = fresh["lease_token"]
    assert progress(conn, job_id, new, {"stage": "images"}) is True
    assert complete(conn, [job_id], [new], [{"plan": {"by": "b"}, "usage": {"tokens": 9}}]) == [
        job_id
    ]
    assert complete(conn, [job_id], [new], [{"plan": {"by": "again"}}]) == []
    plan = plan_row(conn, plan_id)
    assert (plan["status"], plan["plan"], plan["usage"]) == (
        "completed",
        {"by": "b"},
        {"tokens": 9},
    )
    names = event_names(conn, job_id)
    assert names.count("completed") == 1
    assert names.count("lease_lost") == 6  # progress, complete, fail, heartbeat, release, again


def test_requeue_stale_skips_a_job_being_completed(db_url: str, conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    job = claim_one(conn, lease=0.05)
    time.sleep(0.1)  # the lease has expired, but the worker is finishing right now
    with connect(db_url) as worker:
        with worker.transaction():
            assert complete(worker, [job["id"]], [job["lease_token"]], [{"plan": {"ok": 1}}]) == [
                job["id"]
            ]
            assert requeue_stale(conn) == []  # the row is locked by the completion: skipped
        assert requeue_stale(conn) == []  # and now it is completed
    assert job_row(conn, job["id"])["status"] == "completed"
    assert plan_row(conn, enqueued["meal_plan_id"])["plan"] == {"ok": 1}
    assert event_names(conn, job["id"]) == ["enqueued", "claimed", "completed"]


def test_an_expired_lease_is_still_honoured_until_someone_requeues_it(conn: Conn) -> None:
    enqueue(conn)
    job = claim_one(conn, lease=0.05)
    time.sleep(0.1)
    assert complete(conn, [job["id"]], [job["lease_token"]], [{}]) == [job["id"]]
    assert requeue_stale(conn) == []
    assert job_row(conn, job["id"])["status"] == "completed"


def test_requeue_stale_puts_jobs_back_or_fails_them_at_max_attempts(conn: Conn) -> None:
    retry = enqueue_plan(conn, p_max_attempts=5)
    last = enqueue_plan(conn, p_max_attempts=1)
    claimed = claim(conn, worker="dead-worker", lease=0.05)
    assert len(claimed) == 2
    [fresh_id] = enqueue(conn)
    claim_one(conn, lease=300)  # a live lease: untouched
    time.sleep(0.1)

    result = requeue_stale(conn)
    assert result == [
        {"job_id": retry["job_id"], "status": "pending"},
        {"job_id": last["job_id"], "status": "failed"},
    ]
    message = "lease expired: worker dead-worker stopped heartbeating"

    requeued = job_row(conn, retry["job_id"])
    assert (requeued["status"], requeued["attempts"], requeued["last_error"]) == (
        "pending",
        1,
        message,
    )
    assert (requeued["lease_token"], requeued["locked_by"]) == (None, None)
    assert plan_row(conn, retry["meal_plan_id"])["status"] == "pending"
    assert events(conn, retry["job_id"])[-1]["event"] == "requeued"
    assert events(conn, retry["job_id"])[-1]["worker_id"] == "dead-worker"

    failed = job_row(conn, last["job_id"])
    assert (failed["status"], failed["last_error"]) == ("failed", message)
    assert failed["finished_at"] is not None
    plan = plan_row(conn, last["meal_plan_id"])
    assert (plan["status"], plan["error"]) == ("failed", message)
    last_event = events(conn, last["job_id"])[-1]
    assert last_event["event"] == "failed"
    assert last_event["detail"]["last_error"] == message

    assert job_row(conn, fresh_id)["status"] == "processing"
    assert requeue_stale(conn) == []


def test_requeue_stale_respects_its_limit(conn: Conn) -> None:
    enqueue(conn, 5)
    claim(conn, lease=0.05)
    time.sleep(0.1)
    assert len(requeue_stale(conn, p_limit=2)) == 2
    assert len(requeue_stale(conn, p_limit=10)) == 3


# --- fail, release, complete -----------------------------------------------------------------


def test_fail_schedules_a_jittered_capped_exponential_backoff(conn: Conn) -> None:
    [job_id] = enqueue(conn, p_max_attempts=10)
    for attempt, base_delay in [(1, 10.0), (2, 20.0), (3, 25.0), (4, 25.0)]:
        [job] = claim_job(conn, job_id)  # run_at is in the future: claim by id
        assert job["attempts"] == attempt
        status = fail(
            conn,
            job_id,
            job["lease_token"],
            f"timeout {attempt}",
            True,
            p_backoff_base_seconds=10,
            p_backoff_max_seconds=25,
        )
        assert status == "pending"
        delay = seconds(conn, "run_at - updated_at", job_id)
        assert 0.75 * base_delay - 1e-6 <= delay <= 1.25 * base_delay + 1e-6, (attempt, delay)
        stored = job_row(conn, job_id)
        assert (stored["status"], stored["last_error"], stored["lease_token"]) == (
            "pending",
            f"timeout {attempt}",
            None,
        )
        event = events(conn, job_id)[-1]
        assert event["event"] == "retry_scheduled"
        assert event["detail"]["last_error"] == f"timeout {attempt}"
        assert event["attempt"] == attempt
    assert claim(conn) == []  # not due yet

    ids = enqueue(conn, 30, "jitter")
    delays = []
    for job in claim(conn, types=("jitter",), limit=30):
        assert fail(conn, job["id"], job["lease_token"], "x", True) == "pending"
        delays.append(seconds(conn, "run_at - updated_at", job["id"]))
    assert len(delays) == len(ids)
    assert all(7.5 - 1e-6 <= d <= 12.5 + 1e-6 for d in delays)
    assert max(delays) - min(delays) > 0.5, "the delay must be jittered"


def test_fail_gives_up_at_max_attempts_and_at_once_when_not_retryable(conn: Conn) -> None:
    flaky = enqueue_plan(conn, p_max_attempts=2)
    job = claim_one(conn)
    assert fail(conn, job["id"], job["lease_token"], "rate limited", True) == "pending"
    plan = plan_row(conn, flaky["meal_plan_id"])
    assert (plan["status"], plan["error"]) == ("pending", "rate limited")

    [job] = claim_job(conn, flaky["job_id"])
    assert job["attempts"] == 2
    assert plan_row(conn, flaky["meal_plan_id"])["status"] == "generating"
    assert fail(conn, job["id"], job["lease_token"], "rate limited again", True) == "failed"
    stored = job_row(conn, job["id"])
    assert (stored["status"], stored["last_error"]) == ("failed", "rate limited again")
    assert stored["finished_at"] is not None
    plan = plan_row(conn, flaky["meal_plan_id"])
    assert (plan["status"], plan["error"]) == ("failed", "rate limited again")

    bad = enqueue_plan(conn, p_max_attempts=5)
    job = claim_one(conn)
    assert fail(conn, job["id"], job["lease_token"], "invalid request", False) == "failed"
    assert job_row(conn, bad["job_id"])["attempts"] == 1
    plan = plan_row(conn, bad["meal_plan_id"])
    assert (plan["status"], plan["error"]) == ("failed", "invalid request")
    assert event_names(conn, bad["job_id"]) == ["enqueued", "claimed", "failed"]
    assert events(conn, bad["job_id"])[-1]["detail"]["last_error"] == "invalid request"


def test_release_gives_jobs_back_without_counting_the_attempt(conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    job = claim_one(conn, worker="leaving")
    assert release(conn, "leaving", [job["id"]], [uuid.uuid4()]) == 0  # wrong token
    assert release(conn, "leaving", [job["id"]], [job["lease_token"]]) == 1

    stored = job_row(conn, job["id"])
    assert (stored["status"], stored["attempts"]) == ("pending", 0)
    assert (stored["lease_token"], stored["lease_expires_at"], stored["locked_by"]) == (
        None,
        None,
        None,
    )
    assert plan_row(conn, enqueued["meal_plan_id"])["status"] == "pending"
    event = events(conn, job["id"])[-1]
    assert (event["event"], event["worker_id"]) == ("released", "leaving")

    again = claim_one(conn)  # at once, not later
    assert again["attempts"] == 1


def test_complete_batch_writes_only_the_jobs_whose_lease_is_held(conn: Conn) -> None:
    plans = [enqueue_plan(conn, {"n": i}) for i in range(3)]
    jobs = claim(conn, limit=3)
    assert [j["id"] for j in jobs] == [p["job_id"] for p in plans]
    tokens = [jobs[0]["lease_token"], uuid.uuid4(), jobs[2]["lease_token"]]
    results = [{"plan": {"n": i}, "usage": {"cost": i}} for i in range(3)]

    done = complete(conn, [j["id"] for j in jobs], tokens, results)
    assert done == [jobs[0]["id"], jobs[2]["id"]]
    for i in (0, 2):
        plan = plan_row(conn, plans[i]["meal_plan_id"])
        assert (plan["status"], plan["plan"], plan["usage"], plan["progress"]) == (
            "completed",
            {"n": i},
            {"cost": i},
            {"stage": "done"},
        )
        assert plan["completed_at"] is not None
        stored = job_row(conn, jobs[i]["id"])
        assert (stored["status"], stored["lease_token"]) == ("completed", None)
        assert stored["finished_at"] is not None
    plan = plan_row(conn, plans[1]["meal_plan_id"])
    assert (plan["status"], plan["plan"]) == ("generating", None)
    untouched = job_row(conn, jobs[1]["id"])
    assert (untouched["status"], untouched["lease_token"]) == ("processing", jobs[1]["lease_token"])


# --- heartbeat, workers, cancel --------------------------------------------------------------


def test_heartbeat_extends_leases_and_reports_lost_and_cancelled_jobs(conn: Conn) -> None:
    call(
        conn,
        "mealworker_register_worker",
        p_worker_id="w1",
        p_host="vps-1",
        p_pid=4242,
        p_version="0.1.0",
        p_max_jobs=4,
        p_job_types=["ping"],
    )
    enqueue(conn, 3)
    held, lost, cancelled = claim(conn, worker="w1", limit=3, lease=30)
    call(conn, "mealworker_cancel_jobs", p_job_ids=[cancelled["id"]])

    report = heartbeat(
        conn,
        "w1",
        [held["id"], lost["id"], cancelled["id"]],
        [held["lease_token"], uuid.uuid4(), cancelled["lease_token"]],
        lease=600,
        p_active_jobs=3,
        p_rss_bytes=123456,
        p_status="draining",
    )
    assert report == [
        {"job_id": lost["id"], "reason": "lost"},
        {"job_id": cancelled["id"], "reason": "cancelled"},
    ]
    assert seconds(conn, "lease_expires_at - updated_at", held["id"]) == pytest.approx(600)
    assert seconds(conn, "lease_expires_at - started_at", lost["id"]) == pytest.approx(30)

    worker = conn.execute("select * from public.workers where id = 'w1'").fetchone()
    assert worker is not None
    assert (worker["host"], worker["pid"], worker["max_jobs"], worker["job_types"]) == (
        "vps-1",
        4242,
        4,
        ["ping"],
    )
    assert (worker["active_jobs"], worker["rss_bytes"], worker["status"]) == (3, 123456, "draining")
    assert worker["last_seen_at"] > worker["started_at"]
    assert event_names(conn, held["id"]) == ["enqueued", "claimed"]  # no event per heartbeat

    call(conn, "mealworker_stop_worker", p_worker_id="w1")
    worker = conn.execute("select * from public.workers where id = 'w1'").fetchone()
    assert worker is not None
    assert (worker["status"], worker["active_jobs"]) == ("stopped", 0)


def test_a_job_finished_while_the_heartbeat_was_in_flight_is_not_lost(conn: Conn) -> None:
    enqueue(conn, 1)
    (job,) = claim(conn, worker="w1", limit=1)
    assert complete(conn, [job["id"]], [job["lease_token"]], [{}]) == [job["id"]]
    assert heartbeat(conn, "w1", [job["id"]], [job["lease_token"]]) == []
    events = conn.execute(
        "select event from public.background_job_events where job_id = %s", (job["id"],)
    ).fetchall()
    assert "lease_lost" not in [row["event"] for row in events]


def test_heartbeat_registers_an_unknown_worker(conn: Conn) -> None:
    assert heartbeat(conn, "newcomer", [], []) == []
    worker = conn.execute("select * from public.workers where id = 'newcomer'").fetchone()
    assert worker is not None
    assert worker["status"] == "running"


def test_cancel_pending_and_processing_jobs(conn: Conn) -> None:
    done, running, waiting = (enqueue_plan(conn, {"n": i}) for i in range(3))
    first = claim_one(conn, limit=1)
    assert complete(conn, [first["id"]], [first["lease_token"]], [{"plan": {}}]) == [done["job_id"]]
    job = claim_one(conn, limit=1)
    assert job["id"] == running["job_id"]

    ids = [done["job_id"], running["job_id"], waiting["job_id"], 987654]
    result = call(conn, "mealworker_cancel_jobs", p_job_ids=ids)
    assert result == [
        {"job_id": done["job_id"], "status": "completed"},
        {"job_id": running["job_id"], "status": "processing"},
        {"job_id": waiting["job_id"], "status": "cancelled"},
    ]
    assert plan_row(conn, waiting["meal_plan_id"])["status"] == "cancelled"
    assert plan_row(conn, running["meal_plan_id"])["status"] == "generating"
    assert plan_row(conn, done["meal_plan_id"])["status"] == "completed"
    assert job_row(conn, running["job_id"])["cancel_requested"] is True
    assert event_names(conn, waiting["job_id"]) == ["enqueued", "cancelled"]
    assert event_names(conn, running["job_id"]) == ["enqueued", "claimed", "cancel_requested"]
    assert claim(conn) == []  # the cancelled job is never claimed

    call(conn, "mealworker_cancel_jobs", p_job_ids=ids)  # asking twice adds no event
    assert event_names(conn, running["job_id"]).count("cancel_requested") == 1

    # The worker stops the job: it ends cancelled, not retried.
    assert fail(conn, job["id"], job["lease_token"], "cancelled by operator", True) == "cancelled"
    assert job_row(conn, job["id"])["status"] == "cancelled"
    assert plan_row(conn, running["meal_plan_id"])["status"] == "cancelled"


def test_a_released_job_whose_cancel_was_requested_ends_cancelled(conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    job = claim_one(conn)
    call(conn, "mealworker_cancel_jobs", p_job_ids=[job["id"]])
    assert release(conn, "w1", [job["id"]], [job["lease_token"]]) == 1
    assert job_row(conn, job["id"])["status"] == "cancelled"
    assert plan_row(conn, enqueued["meal_plan_id"])["status"] == "cancelled"
    assert event_names(conn, job["id"])[-1] == "cancelled"


# --- run-job: claim by id --------------------------------------------------------------------


def test_claim_job_by_id_with_and_without_force(conn: Conn) -> None:
    later = enqueue_plan(conn)
    conn.execute(
        "update public.background_jobs set run_at = now() + interval '1 day' where id = %s",
        [later["job_id"]],
    )
    [job] = claim_job(conn, later["job_id"], "operator")
    assert (job["id"], job["attempts"]) == (later["job_id"], 1)
    assert job_row(conn, job["id"])["locked_by"] == "operator"
    assert plan_row(conn, later["meal_plan_id"])["status"] == "generating"

    # A processing job is never taken, not even by force.
    assert claim_job(conn, later["job_id"], "other") == []
    assert claim_job(conn, later["job_id"], "other", p_force=True) == []
    assert claim_job(conn, 424242, "other", p_force=True) == []

    assert fail(conn, job["id"], job["lease_token"], "bad", False) == "failed"
    assert claim_job(conn, later["job_id"], "operator") == []

    [forced] = claim_job(conn, later["job_id"], "operator", p_force=True, p_lease_seconds=5)
    assert forced["attempts"] == 1
    assert forced["lease_token"] != job["lease_token"]
    stored = job_row(conn, later["job_id"])
    assert (stored["status"], stored["last_error"], stored["attempts"]) == ("processing", None, 1)
    assert seconds(conn, "lease_expires_at - started_at", later["job_id"]) == pytest.approx(5)
    plan = plan_row(conn, later["meal_plan_id"])
    assert (plan["status"], plan["error"], plan["plan"]) == ("generating", None, None)

    result = {"plan": {"v": 1}}
    assert complete(conn, [forced["id"]], [forced["lease_token"]], [result]) == [forced["id"]]
    [again] = claim_job(conn, later["job_id"], "operator", p_force=True)
    plan = plan_row(conn, later["meal_plan_id"])
    assert (plan["status"], plan["plan"], plan["completed_at"]) == ("generating", None, None)
    last = events(conn, later["job_id"])[-1]
    assert (last["event"], last["detail"]["forced"], last["detail"]["from"]) == (
        "claimed",
        True,
        "completed",
    )
    assert again["attempts"] == 1


# --- events ----------------------------------------------------------------------------------


def test_every_transition_writes_its_event(conn: Conn) -> None:
    enqueued = enqueue_plan(conn)
    job_id = enqueued["job_id"]
    job = claim_one(conn, worker="w1")
    assert progress(conn, job_id, job["lease_token"], {"stage": "outline", "done": 0, "total": 7})
    assert plan_row(conn, enqueued["meal_plan_id"])["progress"] == {
        "stage": "outline",
        "done": 0,
        "total": 7,
    }
    fail(conn, job_id, job["lease_token"], "429 from OpenAI", True)
    [job] = claim_job(conn, job_id, "w2")
    release(conn, "w2", [job_id], [job["lease_token"]])
    job = claim_one(conn, worker="w3")
    complete(conn, [job_id], [job["lease_token"]], [{"plan": {}}])

    rows = events(conn, job_id)
    assert [(e["event"], e["worker_id"], e["attempt"]) for e in rows] == [
        ("enqueued", None, 0),
        ("claimed", "w1", 1),
        ("progress", "w1", 1),
        ("retry_scheduled", "w1", 1),
        ("claimed", "w2", 2),
        ("released", "w2", 1),
        ("claimed", "w3", 2),
        ("completed", "w3", 2),
    ]
    assert rows[2]["detail"] == {"stage": "outline", "done": 0, "total": 7}
    assert rows[3]["detail"]["last_error"] == "429 from OpenAI"
    assert rows[3]["detail"]["from"] == "processing"
    assert rows[3]["detail"]["to"] == "pending"
    assert {e["job_type"] for e in rows} == {"generate_meal_plan"}

    # Manual requeue of a failed job.
    [other] = enqueue(conn)
    job = claim_one(conn)
    fail(conn, other, job["lease_token"], "boom", False)
    call(conn, "mealworker_requeue_jobs", p_job_ids=[other])
    assert event_names(conn, other) == ["enqueued", "claimed", "failed", "requeued"]
    assert events(conn, other)[-1]["detail"]["manual"] is True


def test_events_come_from_one_statement_level_trigger_call(conn: Conn) -> None:
    triggers = conn.execute(
        "select tgname, (tgtype & 1) = 1 as per_row from pg_trigger"
        " where tgrelid = 'public.background_jobs'::regclass and not tgisinternal"
        " order by tgname"
    ).fetchall()
    assert triggers == [
        {"tgname": "background_jobs_events_insert", "per_row": False},
        {"tgname": "background_jobs_events_update", "per_row": False},
    ]

    enqueue(conn, 600)
    conn.execute("set track_functions = 'pl'")
    with conn.transaction():
        claimed = claim(conn, limit=500)
        calls = conn.execute(
            "select pg_stat_get_xact_function_calls("
            "'public.mealworker_jobs_after_update'::regproc) as n"
        ).fetchone()
    assert len(claimed) == 500
    assert calls == {"n": 1}
    counts = conn.execute(
        "select count(*) as n, count(distinct created_at) as stamps"
        " from public.background_job_events where event = 'claimed'"
    ).fetchone()
    assert counts == {"n": 500, "stamps": 1}


def test_an_event_name_set_by_one_function_never_leaks_into_the_next_statement(
    conn: Conn,
) -> None:
    [job_id] = enqueue(conn)
    job = claim_one(conn)
    with conn.transaction():
        # Sets mealworker.event = 'requeued' (and a detail) for a statement that changes nothing.
        assert call(conn, "mealworker_requeue_jobs", p_dry_run=True) == []
        call(conn, "mealworker_cancel_jobs", p_job_ids=[job_id])
        conn.execute("update public.background_jobs set priority = 1 where id = %s", [job_id])
        assert release(conn, "w1", [job_id], [job["lease_token"]]) == 1
        conn.execute("update public.background_jobs set priority = 2 where id = %s", [job_id])
    rows = events(conn, job_id)
    assert [e["event"] for e in rows] == ["enqueued", "claimed", "cancel_requested", "cancelled"]
    assert rows[2]["detail"] is None
    assert rows[3]["worker_id"] == "w1"


def test_a_lease_token_exists_only_while_processing(conn: Conn) -> None:
    [job_id] = enqueue(conn)
    with pytest.raises(errors.CheckViolation):
        conn.execute(
            "update public.background_jobs set lease_token = gen_random_uuid() where id = %s",
            [job_id],
        )


def test_events_since_pages_through_the_log(conn: Conn) -> None:
    a, b = enqueue(conn, 2)
    job = claim_one(conn, limit=1)
    page = call(conn, "mealworker_events_since", p_after_id=0, p_limit=2)
    assert [(e["job_id"], e["event"]) for e in page] == [(a, "enqueued"), (b, "enqueued")]
    rest = call(conn, "mealworker_events_since", p_after_id=page[-1]["id"])
    assert [(e["job_id"], e["event"]) for e in rest] == [(job["id"], "claimed")]
    assert [e["event"] for e in call(conn, "mealworker_events_since", p_job_id=b)] == ["enqueued"]
    assert call(conn, "mealworker_events_since", p_after_id=rest[-1]["id"]) == []


# --- wake-ups --------------------------------------------------------------------------------


@pytest.mark.slow
def test_notify_wakes_workers_on_enqueue_release_and_requeue(db_url: str, conn: Conn) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen mealworker_jobs")

        enqueue(conn, 100, "ping")
        assert drain_notifications(listener) == ["ping"]
        enqueue_plan(conn)
        assert drain_notifications(listener) == ["generate_meal_plan"]
        enqueue(conn, 3, "ping", p_run_at=datetime.now(UTC) + timedelta(hours=1))
        assert drain_notifications(listener) == []

        jobs = claim(conn, limit=200)
        assert drain_notifications(listener) == []
        assert release(conn, "w1", [jobs[0]["id"]], [jobs[0]["lease_token"]]) == 1
        assert drain_notifications(listener) == ["ping"]

        conn.execute("update public.background_jobs set lease_expires_at = now() - interval '1s'")
        assert len(requeue_stale(conn)) == 100
        assert sorted(drain_notifications(listener)) == ["generate_meal_plan", "ping"]

        job = claim_one(conn, types=("generate_meal_plan",))
        assert fail(conn, job["id"], job["lease_token"], "later", True) == "pending"
        assert drain_notifications(listener) == []  # due later: no wake-up now
        [job] = claim_job(conn, job["id"])
        assert fail(conn, job["id"], job["lease_token"], "invalid", False) == "failed"
        assert drain_notifications(listener) == []
        call(conn, "mealworker_requeue_jobs", p_job_ids=[job["id"]])
        assert drain_notifications(listener) == ["generate_meal_plan"]


# --- operator requeue ------------------------------------------------------------------------


def test_requeue_jobs_by_filter_and_by_id(conn: Conn) -> None:
    plan = enqueue_plan(conn, p_max_attempts=1)
    enqueue(conn, 3, "ping", p_max_attempts=1)
    enqueue(conn, 1, "other", p_max_attempts=1)
    jobs = {j["id"]: j for j in claim(conn, types=("ping", "other", "generate_meal_plan"))}
    errors_by_id = {}
    for n, (job_id, job) in enumerate(sorted(jobs.items())):
        error = "OpenAI timeout" if n % 2 else "invalid JSON (100%)"
        errors_by_id[job_id] = error
        assert fail(conn, job_id, job["lease_token"], error, True) == "failed"
    [running] = enqueue(conn, 1, "ping")
    running_job = claim_one(conn)
    assert running_job["id"] == running

    dry = call(conn, "mealworker_requeue_jobs", p_error_contains="openai TIMEOUT", p_dry_run=True)
    expected = [i for i, e in sorted(errors_by_id.items()) if e == "OpenAI timeout"]
    assert [r["job_id"] for r in dry] == expected
    assert {r["previous_status"] for r in dry} == {"failed"}
    assert {r["last_error"] for r in dry} == {"OpenAI timeout"}
    assert {job_row(conn, i)["status"] for i in jobs} == {"failed"}  # dry run: nothing changed

    literal = call(conn, "mealworker_requeue_jobs", p_error_contains="(100%)", p_dry_run=True)
    assert [r["job_id"] for r in literal] == [
        i for i, e in sorted(errors_by_id.items()) if e != "OpenAI timeout"
    ]
    assert call(conn, "mealworker_requeue_jobs", p_job_type="other", p_dry_run=True)[0][
        "job_type"
    ] == ("other")
    future = datetime.now(UTC) + timedelta(hours=1)
    assert call(conn, "mealworker_requeue_jobs", p_since=future, p_dry_run=True) == []

    limited = call(conn, "mealworker_requeue_jobs", p_job_type="ping", p_limit=2)
    assert len(limited) == 2
    for row in limited:
        stored = job_row(conn, row["job_id"])
        assert (stored["status"], stored["attempts"]) == ("pending", 1)
        assert seconds(conn, "updated_at - run_at", row["job_id"]) == pytest.approx(0)

    by_id = call(
        conn,
        "mealworker_requeue_jobs",
        p_job_ids=[plan["job_id"], running],
        p_reset_attempts=True,
    )
    assert [(r["job_id"], r["previous_status"]) for r in by_id] == [(plan["job_id"], "failed")]
    assert job_row(conn, plan["job_id"])["attempts"] == 0
    stored_plan = plan_row(conn, plan["meal_plan_id"])
    assert (stored_plan["status"], stored_plan["error"]) == ("pending", None)
    assert job_row(conn, running)["status"] == "processing"  # never touched
    assert job_row(conn, running)["lease_token"] == running_job["lease_token"]


# --- stats and cache -------------------------------------------------------------------------


def test_queue_stats(conn: Conn) -> None:
    empty = scalar(conn, "mealworker_queue_stats")
    assert empty == {
        "by_status": {"pending": 0, "processing": 0, "completed": 0, "failed": 0, "cancelled": 0},
        "by_type": {},
        "oldest_pending_seconds": None,
        "workers": [],
    }

    enqueue(conn, 3, "ping", p_run_at=datetime.now(UTC) - timedelta(seconds=30))
    enqueue(conn, 2, "other", p_run_at=datetime.now(UTC) + timedelta(hours=1))
    claim_one(conn, types=("ping",), limit=1)
    heartbeat(conn, "w-live", [], [])
    heartbeat(conn, "w-gone", [], [])
    conn.execute(
        "update public.workers set last_seen_at = now() - interval '2 hours' where id = %s",
        ["w-gone"],
    )

    stats = scalar(conn, "mealworker_queue_stats")
    assert stats["by_status"] == {
        "pending": 4,
        "processing": 1,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert stats["by_type"] == {"ping": {"pending": 2, "processing": 1}, "other": {"pending": 2}}
    assert 29 < stats["oldest_pending_seconds"] < 60
    assert [w["id"] for w in stats["workers"]] == ["w-live"]


def test_get_job_of_an_unknown_id_returns_no_row(conn: Conn) -> None:
    assert call(conn, "mealworker_get_job", p_job_id=123456789) == []


def test_image_cache(conn: Conn) -> None:
    assert call(conn, "mealworker_image_cache_get", p_query="shakshuka") == [
        {"found": False, "photo": None}
    ]
    photo = {"url": "https://images.example/1.jpg", "author": "A. Photographer"}
    call(conn, "mealworker_image_cache_put", p_query="shakshuka", p_photo=Jsonb(photo))
    call(conn, "mealworker_image_cache_put", p_query="nothing", p_photo=None)
    for _ in range(2):
        assert call(conn, "mealworker_image_cache_get", p_query="shakshuka") == [
            {"found": True, "photo": photo}
        ]
    assert call(conn, "mealworker_image_cache_get", p_query="nothing") == [
        {"found": True, "photo": None}
    ]
    changed = {**photo, "url": "https://images.example/2.jpg"}
    call(conn, "mealworker_image_cache_put", p_query="shakshuka", p_photo=Jsonb(changed))
    row = conn.execute("select * from public.image_cache where query = 'shakshuka'").fetchone()
    assert row is not None
    assert (row["photo"], row["hits"]) == (changed, 2)
    assert row["last_used_at"] is not None


# --- security --------------------------------------------------------------------------------


def test_users_read_only_their_own_meal_plans(conn: Conn) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    mine = enqueue_plan(conn, {"who": "alice"}, p_user_id=alice)
    enqueue_plan(conn, {"who": "bob"}, p_user_id=bob)
    enqueue_plan(conn, {"who": "nobody"})

    with acting_as(conn, "authenticated", alice) as c:
        assert c.execute("select auth.uid() as uid").fetchone() == {"uid": alice}
        rows = c.execute("select id, request from public.meal_plans").fetchall()
        assert rows == [{"id": mine["meal_plan_id"], "request": {"who": "alice"}}]
    with conn.transaction(force_rollback=True):  # the legacy per-claim setting works too
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claim.sub', %s, true)", [str(bob)])
        rows = conn.execute("select request from public.meal_plans").fetchall()
        assert rows == [{"request": {"who": "bob"}}]
    with acting_as(conn, "authenticated", uuid.uuid4()) as c:
        assert c.execute("select count(*) as n from public.meal_plans").fetchone() == {"n": 0}

    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, "authenticated", alice) as c:
        c.execute("insert into public.meal_plans (user_id, request) values (%s, '{}')", [alice])
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, "authenticated", alice) as c:
        c.execute("update public.meal_plans set status = 'completed'")
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, "anon") as c:
        c.execute("select * from public.meal_plans")


@pytest.mark.parametrize("table", [t for t in TABLES if t != "meal_plans"])
@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_end_users_cannot_touch_queue_tables(conn: Conn, role: str, table: str) -> None:
    enqueue_plan(conn, p_user_id=uuid.uuid4())
    query = sql.SQL("select * from public.{}").format(sql.Identifier(table))
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, role, uuid.uuid4()) as c:
        c.execute(query)
    truncate = sql.SQL("truncate public.{}").format(sql.Identifier(table))
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, role, uuid.uuid4()) as c:
        c.execute(truncate)


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_end_users_cannot_execute_queue_functions(conn: Conn, role: str) -> None:
    attempts: list[Callable[[Conn], object]] = [
        lambda c: enqueue_plan(c, p_user_id=uuid.uuid4()),
        lambda c: claim(c),
        lambda c: scalar(c, "mealworker_queue_stats"),
        lambda c: call(c, "mealworker_events_since"),
        lambda c: call(c, "mealworker_image_cache_get", p_query="x"),
    ]
    for attempt in attempts:
        with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, role, uuid.uuid4()) as c:
            attempt(c)

    denied = conn.execute(
        "select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'public' and p.proname like 'mealworker%%'"
        " and has_function_privilege(%s, p.oid, 'execute')",
        [role],
    ).fetchall()
    assert denied == []


def test_the_service_role_can_do_everything(conn: Conn) -> None:
    user = uuid.uuid4()
    with acting_as(conn, "service_role", uuid.uuid4()) as c:
        enqueued = enqueue_plan(c, p_user_id=user)
        enqueue(c, 2)
        jobs = claim(c, limit=3)
        assert len(jobs) == 3
        done = complete(
            c, [j["id"] for j in jobs], [j["lease_token"] for j in jobs], [{"plan": {}}] * 3
        )
        assert len(done) == 3
        assert scalar(c, "mealworker_queue_stats")["by_status"]["completed"] == 3
        assert len(call(c, "mealworker_events_since")) == 9
        call(c, "mealworker_image_cache_put", p_query="q", p_photo=Jsonb({}))
        assert call(c, "mealworker_image_cache_get", p_query="q")[0]["found"] is True
        heartbeat(c, "w", [], [])
        plans = c.execute("select id, status from public.meal_plans").fetchall()
        assert plans == [{"id": enqueued["meal_plan_id"], "status": "completed"}]


def test_catalog_rules(conn: Conn) -> None:
    rls = conn.execute(
        "select relname, relrowsecurity from pg_class"
        " where relnamespace = 'public'::regnamespace and relkind = 'r' order by relname"
    ).fetchall()
    assert rls == [{"relname": t, "relrowsecurity": True} for t in sorted(TABLES)]

    functions = conn.execute(
        "select p.proname, p.provolatile, p.proconfig, p.prosecdef,"
        " has_function_privilege('service_role', p.oid, 'execute') as service"
        " from pg_proc p where p.pronamespace = 'public'::regnamespace"
        " and p.proname like 'mealworker%%'"
    ).fetchall()
    names = [f["proname"] for f in functions]
    assert len(names) == len(set(names)), "no overloads"
    assert set(names) >= CONTRACT_FUNCTIONS
    for f in functions:
        assert f["proconfig"] == ['search_path=""'], f["proname"]
        assert f["service"] is True, f["proname"]
        assert f["prosecdef"] is False, f["proname"]
        expected = "s" if f["proname"] in STABLE_FUNCTIONS else "v"
        assert f["provolatile"] == expected, f["proname"]

    statements = [s.strip() for s in MIGRATION.read_text(encoding="utf-8").split(";") if s.strip()]
    assert statements[-1].splitlines()[-1] == "notify pgrst, 'reload schema'"


def test_the_migration_can_be_applied_again(conn: Conn) -> None:
    enqueued = enqueue_plan(conn, p_user_id=uuid.uuid4())
    before = conn.execute(
        "select count(*) as n from pg_proc where pronamespace = 'public'::regnamespace"
    ).fetchone()
    text = MIGRATION.read_text(encoding="utf-8")
    conn.execute(text)
    conn.execute(text)
    after = conn.execute(
        "select count(*) as n from pg_proc where pronamespace = 'public'::regnamespace"
    ).fetchone()
    assert after == before
    assert get_job(conn, enqueued["job_id"])["status"] == "pending"
    assert claim_one(conn)["id"] == enqueued["job_id"]


# --- the claim plan on a large table ---------------------------------------------------------


@pytest.mark.slow
def test_claim_stays_on_the_index_with_200k_pending_jobs(conn: Conn) -> None:
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")  # skip the event triggers
        conn.execute(
            "insert into public.background_jobs (job_type, payload, priority, run_at)"
            " select case when g % 10 = 0 then 'other' else 'ping' end, '{}', g % 3,"
            "        now() - make_interval(secs => g)"
            "   from generate_series(1, 200000) as g"
        )
    conn.execute("analyze public.background_jobs")

    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert len(claim(conn, types=("ping",), limit=10)) == 10
        timings.append((time.perf_counter() - started) * 1000)
    batch_timings = []
    for _ in range(5):
        started = time.perf_counter()
        assert len(claim(conn, types=("ping",), limit=500)) == 500
        batch_timings.append((time.perf_counter() - started) * 1000)

    median, batch_median = statistics.median(timings), statistics.median(batch_timings)
    print(
        f"\nclaim of 10 on 200k pending: median {median:.2f} ms, max {max(timings):.2f} ms;"
        f" claim of 500: median {batch_median:.2f} ms"
    )
    assert median < 20, timings

    plans: list[str] = []
    conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    try:
        conn.execute("load 'auto_explain'")
    except (errors.InsufficientPrivilege, errors.UndefinedFile):
        pytest.skip("auto_explain cannot be loaded here: the plan shape is not checked")
    for setting in (
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
        "auto_explain.log_analyze = on",
        "auto_explain.log_level = notice",
        "client_min_messages = notice",
    ):
        conn.execute(sql.SQL("set {}").format(sql.SQL(setting)))
    claim(conn, types=("ping",), limit=10)
    conn.execute("set auto_explain.log_min_duration = -1")
    claim_plans = [p for p in plans if "for update skip locked" in p]
    assert claim_plans, plans
    assert "background_jobs_claim_idx" in claim_plans[0]
    assert "Seq Scan on background_jobs" not in claim_plans[0]
    print(claim_plans[0])


def test_the_sql_notifies_on_the_channel_the_worker_listens_to() -> None:
    """The channel is named in the triggers' SQL and in ``queue.NOTIFY_CHANNEL``; a rename on
    one side only would leave every worker polling, silently."""
    import re

    from mealplan_cli.core.queue import NOTIFY_CHANNEL

    folder = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
    channels = {
        match
        for path in folder.glob("*.sql")
        for match in re.findall(r"pg_notify\(\s*'([^']+)'", path.read_text())
    }
    assert channels == {NOTIFY_CHANNEL}
