"""A job that waits without failing: ``mealworker_defer_job`` over each transport, and a
handler raising ``JobDeferred`` through the worker (generic: ping-like jobs, no OpenAI)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from mealplan_cli.core.handlers import HandlerRegistry, JobContext, JobDeferred
from mealplan_cli.core.queue import ClaimedJob, Queue
from mealplan_cli.ops.redact import SecretStr
from mealplan_cli.runtime import open_runtime
from mealplan_cli.settings.config import Settings
from tests.helpers.cli import cli
from tests.helpers.transports import Opener, run

LATER = datetime(2999, 1, 1, tzinfo=UTC)


def job_row(url: str, job_id: int) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(
            "select status, attempts, run_at, wait_reason, last_error, locked_by, lease_token"
            " from public.background_jobs where id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return row


def events_of(url: str, job_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "select event, attempt, worker_id, detail from public.background_job_events"
            " where job_id = %s order by id",
            (job_id,),
        ).fetchall()


def test_a_deferred_job_waits_with_its_reason_and_keeps_its_attempts(
    open_db: Opener, database_url: str
) -> None:
    async def body(queue: Queue) -> tuple[int, Any, Any, Any]:
        (job_id,) = await queue.enqueue_jobs("ping", [{}], max_attempts=1)
        (job,) = await queue.claim("w1", ["ping"], 1, 30)
        deferred = await queue.defer(job, LATER, "the partner's API is closed tonight")
        again = await queue.defer(job, LATER, "twice")  # the lease went with the deferral
        waiting = await queue.waiting()
        return job_id, deferred, again, waiting

    job_id, deferred, again, waiting = run(open_db, body)
    assert deferred == "pending"
    assert again is None
    row = job_row(database_url, job_id)
    assert row["status"] == "pending"
    assert row["attempts"] == 0  # max_attempts=1: a failure would have been final
    assert row["run_at"] == LATER
    assert row["wait_reason"] == "the partner's API is closed tonight"
    assert (row["last_error"], row["locked_by"], row["lease_token"]) == (None, None, None)
    events = events_of(database_url, job_id)
    [event] = [e for e in events if e["event"] == "deferred"]
    assert event["worker_id"] == "w1"
    assert event["detail"]["reason"] == "the partner's API is closed tonight"
    assert datetime.fromisoformat(event["detail"]["run_at"]) == LATER
    assert event["detail"]["from"] == "processing"
    assert "retry_scheduled" not in [e["event"] for e in events]
    [group] = waiting
    assert (group.job_type, group.reason, group.jobs) == (
        "ping",
        "the partner's API is closed tonight",
        1,
    )
    assert group.first_run_at == LATER


def test_the_reason_goes_when_the_job_runs_again(open_db: Opener, database_url: str) -> None:
    async def body(queue: Queue) -> tuple[int, Any]:
        (job_id,) = await queue.enqueue_jobs("ping", [{}])
        (job,) = await queue.claim("w1", ["ping"], 1, 30)
        await queue.defer(job, LATER, "later")
        await queue.requeue_jobs(job_ids=[job_id])  # an operator: run it now
        requeued = job_row(database_url, job_id)
        assert len(await queue.claim("w1", ["ping"], 1, 30)) == 1
        return job_id, requeued

    job_id, requeued = run(open_db, body)
    assert requeued["status"] == "pending"
    assert requeued["wait_reason"] is None  # runnable now: it no longer waits
    row = job_row(database_url, job_id)
    assert (row["status"], row["attempts"], row["wait_reason"]) == ("processing", 1, None)


def test_a_job_being_cancelled_is_not_deferred(open_db: Opener, database_url: str) -> None:
    async def body(queue: Queue) -> tuple[int, Any]:
        (job_id,) = await queue.enqueue_jobs("ping", [{}])
        (job,) = await queue.claim("w1", ["ping"], 1, 30)
        await queue.cancel([job_id])
        return job_id, await queue.defer(job, LATER, "later")

    job_id, outcome = run(open_db, body)
    assert outcome == "cancel_requested"
    row = job_row(database_url, job_id)
    assert (row["status"], row["wait_reason"]) == ("processing", None)


def test_a_handler_raising_job_deferred_makes_its_job_wait(database_url: str) -> None:
    """Through the worker: the handler's JobDeferred is a deferral, not a failure: no
    attempt spent, no retry scheduled, nothing in the errors."""
    until = datetime.now(UTC) + timedelta(days=3)

    async def closed(job: ClaimedJob, context: JobContext) -> dict[str, Any]:
        raise JobDeferred(until, "closed until Monday")

    handlers = HandlerRegistry()
    handlers.register("weekday_only", closed)
    settings = Settings(database_url=SecretStr(database_url))

    async def main() -> tuple[int, Any]:
        async with open_runtime(settings, handlers=handlers) as rt:
            enqueued = await rt.queue.enqueue("weekday_only", {}, max_attempts=1)
            worker = rt.worker(until_empty=True)
            report = await asyncio.wait_for(worker.run(), 60)
            return enqueued.job_id, (report, worker.metrics.render())

    job_id, (report, metrics) = asyncio.run(main())
    assert (report.deferred, report.failed, report.retried) == (1, 0, 0)
    row = job_row(database_url, job_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 0, None)
    assert row["run_at"] == until
    assert row["wait_reason"] == "closed until Monday"
    assert 'mealworker_jobs_deferred_total{job_type="weekday_only"} 1' in metrics
    assert "retry_scheduled" not in [e["event"] for e in events_of(database_url, job_id)]


def test_tail_and_stats_show_the_waiting_jobs(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}

    async def main() -> None:
        async with open_runtime(Settings(database_url=SecretStr(database_url))) as rt:
            queue = rt.queue
            await queue.enqueue_jobs("ping", [{}, {}])
            for job in await queue.claim("w1", ["ping"], 2, 30):
                await queue.defer(job, LATER, 'the "partner" is closed')

    asyncio.run(main())
    code, out, err = cli(env, "tail", "--no-follow", "--event", "deferred")
    assert code == 0, err
    assert out.count("deferred") == 2
    assert 'the "partner" is closed' in out
    code, out, err = cli(env, "stats")
    assert code == 0, err
    assert "waiting" in out.lower()
    assert 'the "partner" is closed' in out
    assert "2999-01-01" in out


def test_requeue_waiting_runs_the_waiting_jobs_now_and_no_other(
    env: dict[str, str], database_url: str
) -> None:
    """``requeue --waiting``: the jobs deferred with a reason, of the type asked for; a job
    scheduled for later without a reason (a retry's backoff, ``enqueue --delay``) keeps its time.
    """

    async def main() -> tuple[list[int], int, int]:
        async with open_runtime(Settings(database_url=SecretStr(database_url))) as rt:
            queue = rt.queue
            deferred = await queue.enqueue_jobs("ping", [{}, {}])
            for job in await queue.claim("w1", ["ping"], 2, 30):
                await queue.defer(job, LATER, "closed tonight")
            (other_type,) = await queue.enqueue_jobs("weekday_only", [{}])
            (job,) = await queue.claim("w1", ["weekday_only"], 1, 30)
            await queue.defer(job, LATER, "closed until Monday")
            (scheduled,) = await queue.enqueue_jobs("ping", [{}], run_at=LATER)
            return deferred, other_type, scheduled

    deferred, other_type, scheduled = asyncio.run(main())
    code, out, err = cli(env, "requeue", "--waiting", "--type", "ping", "--dry-run", "--json")
    assert code == 0, err
    assert [row["job_id"] for row in json.loads(out)] == deferred
    assert [job_row(database_url, i)["run_at"] for i in deferred] == [LATER, LATER]

    code, out, err = cli(env, "requeue", "--waiting", "--type", "ping")
    assert code == 0, err
    assert "requeued 2 jobs" in out
    for job_id in deferred:
        row = job_row(database_url, job_id)
        assert (row["status"], row["wait_reason"], row["attempts"]) == ("pending", None, 0)
        assert row["run_at"] < LATER
    assert job_row(database_url, other_type)["wait_reason"] == "closed until Monday"
    assert job_row(database_url, scheduled)["run_at"] == LATER

    code, out, err = cli(env, "requeue", "--waiting")
    assert code == 0, err
    assert "requeued 1 job" in out
    assert job_row(database_url, other_type)["wait_reason"] is None
    assert job_row(database_url, scheduled)["run_at"] == LATER
    code, _, err = cli(env, "requeue", "--waiting", "--failed")
    assert code == 2
    assert "exactly one of" in " ".join(err.split())
