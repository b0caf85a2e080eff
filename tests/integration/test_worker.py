"""The worker loop in-process, against a real PostgreSQL (no mocks of the database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.queue import ClaimedJob, Completion, Queue
from mealplan_cli.core.worker import Worker, WorkerConfig, WorkerReport
from mealplan_cli.handlers import HandlerRegistry, JobContext
from mealplan_cli.mealplans.generation.services import generation_services
from mealplan_cli.ops.errors import InvalidRequestError, ProviderUnavailableError
from mealplan_cli.ops.metrics import WorkerMetrics
from mealplan_cli.runtime import builtin_handlers
from mealplan_cli.settings.config import Settings

Body = Callable[[Queue], Awaitable[Any]]


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[Queue]:
    db = await PostgresDatabase(url).open()
    try:
        yield Queue(db)
    finally:
        await db.close()


async def drain(
    queue: Queue,
    handlers: HandlerRegistry | None = None,
    metrics: WorkerMetrics | None = None,
    **config: Any,
) -> WorkerReport:
    settings = Settings(planner="catalog")
    values: dict[str, Any] = {"until_empty": True, "poll_interval": 0.05, **config}
    async with generation_services(settings) as services:
        worker = Worker(
            queue,
            handlers or builtin_handlers(),
            WorkerConfig(**values),
            resources=services,
            metrics=metrics,
        )
        return await asyncio.wait_for(worker.run(), 60)


def job_rows(url: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        rows = conn.execute("select * from public.background_jobs order by id").fetchall()
    return {row["id"]: row for row in rows}


def events(url: str, event: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select job_id from public.background_job_events where event = %s order by id",
            (event,),
        ).fetchall()
    return [row[0] for row in rows]


def run(url: str, body: Body) -> Any:
    async def main() -> Any:
        async with connected(url) as queue:
            return await body(queue)

    return asyncio.run(main())


def test_until_empty_processes_every_job_once(database_url: str) -> None:
    async def body(queue: Queue) -> WorkerReport:
        await queue.enqueue_jobs("ping", [{}] * 300)
        return await drain(queue, concurrency=50)

    report = run(database_url, body)
    assert report.completed == 300
    assert all(row["status"] == "completed" for row in job_rows(database_url).values())
    completed = events(database_url, "completed")
    assert len(completed) == len(set(completed)) == 300


def test_unknown_job_types_are_never_claimed(database_url: str) -> None:
    async def body(queue: Queue) -> WorkerReport:
        await queue.enqueue_jobs("resize_image", [{}])
        await queue.enqueue_jobs("ping", [{}])
        return await drain(queue)

    report = run(database_url, body)
    assert report.completed == 1
    statuses = {row["job_type"]: row["status"] for row in job_rows(database_url).values()}
    assert statuses == {"resize_image": "pending", "ping": "completed"}


def registry(handler: Callable[[ClaimedJob, JobContext], Awaitable[Any]]) -> HandlerRegistry:
    handlers = HandlerRegistry()
    handlers.register("ping", handler)
    return handlers


def test_a_transient_failure_schedules_a_retry(database_url: str) -> None:
    async def flaky(job: ClaimedJob, context: JobContext) -> None:
        raise ProviderUnavailableError("OpenAI unavailable (RateLimitError)")

    metrics = WorkerMetrics()

    async def body(queue: Queue) -> WorkerReport:
        await queue.enqueue_jobs("ping", [{}])
        return await drain(queue, registry(flaky), metrics)

    report = run(database_url, body)
    assert report.retried == 1
    assert metrics.errors == {"ProviderUnavailableError": 1}
    assert metrics.retried == {"ping": 1}
    (row,) = job_rows(database_url).values()
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert "RateLimitError" in row["last_error"]
    assert row["run_at"] > row["updated_at"]


def test_a_permanent_failure_fails_at_once(database_url: str) -> None:
    async def bad(job: ClaimedJob, context: JobContext) -> None:
        raise InvalidRequestError("invalid meal-plan request: days: too many")

    async def body(queue: Queue) -> WorkerReport:
        await queue.enqueue_jobs("ping", [{}])
        return await drain(queue, registry(bad))

    assert run(database_url, body).failed == 1
    (row,) = job_rows(database_url).values()
    assert row["status"] == "failed"
    assert row["last_error"] == "invalid meal-plan request: days: too many"


def test_a_crashing_handler_fails_the_job_and_the_worker_goes_on(database_url: str) -> None:
    async def crash(job: ClaimedJob, context: JobContext) -> None:
        if job.payload.get("crash"):
            raise ZeroDivisionError("division by zero")

    async def body(queue: Queue) -> WorkerReport:
        await queue.enqueue_jobs("ping", [{"crash": True}, {}, {}])
        return await drain(queue, registry(crash))

    report = run(database_url, body)
    assert report.completed == 2
    assert report.retried == 1
    rows = list(job_rows(database_url).values())
    assert "ZeroDivisionError" in rows[0]["last_error"]


def test_a_job_past_its_timeout_fails(database_url: str) -> None:
    async def slow(job: ClaimedJob, context: JobContext) -> None:
        await asyncio.sleep(10)

    async def body(queue: Queue) -> WorkerReport:
        await queue.enqueue_jobs("ping", [{}], max_attempts=1)
        return await drain(queue, registry(slow), job_timeout=0.3)

    assert run(database_url, body).failed == 1
    (row,) = job_rows(database_url).values()
    assert row["last_error"] == "timed out after 0.3s"


@pytest.mark.parametrize(
    "lease_seconds",
    [3, 60],
    ids=["the-heartbeat-notices", "the-completion-is-refused"],
)
def test_a_lost_lease_drops_the_result(database_url: str, lease_seconds: float) -> None:
    """The job is taken over while it runs; the first worker's late result must not land,
    whether its heartbeat learns of it first or its completion is fenced out."""
    started = asyncio.Event()
    metrics = WorkerMetrics()

    async def slow(job: ClaimedJob, context: JobContext) -> dict[str, str]:
        started.set()
        await asyncio.sleep(1.5)
        return {"by": "first"}

    async def body(queue: Queue) -> WorkerReport:
        await queue.enqueue_jobs("ping", [{}])
        first = asyncio.create_task(
            drain(queue, registry(slow), metrics, lease_seconds=lease_seconds, concurrency=1)
        )
        await started.wait()
        with psycopg.connect(database_url, autocommit=True) as conn:  # as if it had stalled
            conn.execute("update public.background_jobs set lease_expires_at = now()")
        async with connected(database_url) as other:
            assert await other.requeue_stale() != []
            (taken,) = await other.claim("second", ["ping"], 1, 60)
            assert await other.complete([Completion(taken, None)]) == {taken.id}
        return await first

    report = run(database_url, body)
    assert report.completed == 0
    assert report.lost == 1
    assert events(database_url, "completed") == [1]
    assert metrics.done == {}


def test_an_operator_cancel_stops_the_running_job(database_url: str) -> None:
    started = asyncio.Event()

    async def slow(job: ClaimedJob, context: JobContext) -> None:
        started.set()
        await asyncio.sleep(30)

    async def body(queue: Queue) -> WorkerReport:
        (job_id,) = await queue.enqueue_jobs("ping", [{}])
        worker = asyncio.create_task(drain(queue, registry(slow), lease_seconds=0.6))
        await started.wait()
        async with connected(database_url) as other:
            (cancellation,) = await other.cancel([job_id])
            assert (cancellation.job_id, cancellation.status) == (job_id, "processing")
        return await worker

    report = run(database_url, body)
    assert report.lost == 0
    (row,) = job_rows(database_url).values()
    assert row["status"] == "cancelled"
