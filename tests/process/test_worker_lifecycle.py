"""The worker loop's edge cases, against a real PostgreSQL, with outages of single SQL
functions injected in the database itself (tests/helpers/sql_faults.py).

Each case here broke before claims were records keyed by their lease token: a lost lease then
a re-claim by the same worker, a cancel then a requeue, a completion written through a blip,
and ``run-job`` going through the same lifecycle as ``work``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.queue import ClaimedJob, Queue
from mealplan_cli.core.worker import Worker, WorkerConfig
from mealplan_cli.core.worker.outage import Outage
from mealplan_cli.handlers import HandlerRegistry, JobContext
from mealplan_cli.ops.errors import ProviderUnavailableError
from mealplan_cli.ops.metrics import Health, WorkerMetrics
from tests.helpers.sql_faults import SqlFaults

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[ClaimedJob, JobContext], Awaitable[Any]]


class Jobs:
    """The test's own view of the queue: SQL on a connection of its own, as an operator's
    commands would run it while the worker works."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.faults = SqlFaults(url)

    def sql(self, statement: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            cursor = conn.execute(statement.encode(), params or None)
            return cursor.fetchall() if cursor.description else []

    def enqueue(self, payloads: list[dict[str, Any]], max_attempts: int = 5) -> list[int]:
        rows = self.sql(
            "select public.mealworker_enqueue_jobs('task', %s, 0, %s) as id",
            Jsonb(payloads),
            max_attempts,
        )
        return [int(r["id"]) for r in rows]

    def job(self, job_id: int) -> dict[str, Any]:
        (row,) = self.sql("select * from public.background_jobs where id = %s", job_id)
        return row

    def statuses(self) -> list[str]:
        return [r["status"] for r in self.sql("select status from public.background_jobs")]

    def expire(self, job_id: int) -> None:
        """As if the worker holding it had stalled past its lease."""
        self.sql(
            "update public.background_jobs set lease_expires_at = now() - interval '1 second'"
            " where id = %s",
            job_id,
        )

    def requeue_stale(self) -> list[dict[str, Any]]:
        return self.sql("select * from public.mealworker_requeue_stale(1000)")

    def cancel(self, job_id: int) -> None:
        self.sql("select * from public.mealworker_cancel_jobs(array[%s]::bigint[])", job_id)

    def requeue_cancelled(self, job_id: int) -> None:
        self.sql(
            "select * from public.mealworker_requeue_jobs("
            "p_job_ids => array[%s]::bigint[], p_statuses => array['cancelled'])",
            job_id,
        )

    def claim_as(self, worker_id: str) -> None:
        self.sql("select * from public.mealworker_claim_jobs(%s, array['task'], 1, 60)", worker_id)


@pytest.fixture
def jobs(database_url: str) -> Jobs:
    return Jobs(database_url)


@asynccontextmanager
async def worker_for(jobs: Jobs, handler: Handler, **config: Any) -> AsyncIterator[Worker]:
    handlers = HandlerRegistry()
    handlers.register("task", handler)
    values: dict[str, Any] = {
        "worker_id": "w1",
        "poll_interval": 0.02,
        "lease_seconds": 1.5,
        "sweep_interval": 3600,
        "shutdown_grace": 0,
        "listen": False,
        **config,
    }
    db = await PostgresDatabase(jobs.url, min_size=2, max_size=4).open()
    try:
        yield Worker(Queue(db), handlers, WorkerConfig(**values))
    finally:
        await db.close()


async def until(predicate: Callable[[], bool], seconds: float = 20) -> None:
    """Poll ``predicate`` with a deadline."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110  (no event to wait on: the state is the db's)
            await asyncio.sleep(0.02)


def test_a_lost_lease_then_a_reclaim_by_the_same_worker_starts_clean(jobs: Jobs) -> None:
    """The first run is stopped when the job is claimed again; the second run's failure is
    recorded (it used to be dropped, as if that claim had been lost too)."""
    first_cancelled = asyncio.Event()
    runs = 0

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                first_cancelled.set()
                raise
        await first_cancelled.wait()
        raise ProviderUnavailableError("rate limited")

    (job_id,) = jobs.enqueue([{}], max_attempts=2)

    async def main() -> None:
        async with worker_for(jobs, handler, concurrency=2, lease_seconds=3) as worker:
            running = asyncio.create_task(worker.run())
            await until(lambda: runs == 1)
            jobs.expire(job_id)  # as if this worker had stalled past its lease
            assert [(r["job_id"], r["status"]) for r in jobs.requeue_stale()] == [
                (job_id, "pending")
            ]
            await until(lambda: jobs.job(job_id)["status"] == "failed")
            worker.stop()
            report = await running
            assert (report.failed, report.lost, report.released) == (1, 1, 0)

    asyncio.run(main())
    job = jobs.job(job_id)
    assert (job["status"], job["last_error"], job["lease_token"]) == (
        "failed",
        "rate limited",
        None,
    )
    assert runs == 2


def test_a_cancelled_then_requeued_job_is_released_at_shutdown_not_cancelled_again(
    jobs: Jobs,
) -> None:
    runs = 0

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(30)

    (job_id,) = jobs.enqueue([{}])

    async def main() -> None:
        async with worker_for(jobs, handler, lease_seconds=1.5) as worker:
            running = asyncio.create_task(worker.run())
            await until(lambda: runs == 1)
            jobs.cancel(job_id)
            await until(lambda: jobs.job(job_id)["status"] == "cancelled")
            jobs.requeue_cancelled(job_id)
            await until(lambda: runs == 2)
            worker.stop()
            report = await running
            assert report.released == 1

    asyncio.run(main())
    job = jobs.job(job_id)
    assert (job["status"], job["attempts"]) == ("pending", 1)
    assert job["last_error"] == "cancelled by an operator"  # from the first claim only


def test_a_completion_during_shutdown_survives_a_blip_and_is_not_redone(jobs: Jobs) -> None:
    runs = 0
    worker: Worker

    async def handler(job: ClaimedJob, context: JobContext) -> dict[str, str]:
        nonlocal runs
        runs += 1
        await asyncio.to_thread(jobs.faults.fail, "mealworker_complete_jobs", 3)
        worker.stop()  # SIGTERM arrives just as the plan is finished
        return {"plan": "expensive"}

    (job_id,) = jobs.enqueue([{}])
    jobs.faults.install("mealworker_complete_jobs")
    jobs.faults.install("mealworker_fail_job")

    async def main() -> None:
        nonlocal worker
        async with worker_for(jobs, handler, lease_seconds=30) as worker:
            report = await worker.run()
            assert report.completed == 1

    asyncio.run(main())
    assert runs == 1
    job = jobs.job(job_id)
    assert (job["status"], job["result"]) == ("completed", {"plan": "expensive"})
    assert jobs.faults.calls("mealworker_complete_jobs") == 4
    assert jobs.faults.calls("mealworker_fail_job") == 0


def test_a_completion_is_given_up_when_the_lease_would_have_expired(jobs: Jobs) -> None:
    async def handler(job: ClaimedJob, context: JobContext) -> dict[str, str]:
        await asyncio.to_thread(jobs.faults.fail, "mealworker_complete_jobs", 10_000)
        return {"plan": "late"}

    (job_id,) = jobs.enqueue([{}])
    jobs.faults.install("mealworker_complete_jobs")

    async def main() -> None:
        async with worker_for(jobs, handler, lease_seconds=1, until_empty=True) as worker:
            report = await worker.run()
            assert (report.completed, report.lost) == (0, 1)

    asyncio.run(main())
    assert jobs.job(job_id)["status"] == "processing"  # left to the stale sweep, never half-written


def run_one(jobs: Jobs, handler: Handler, during: Callable[[], object] | None = None) -> Any:
    jobs.faults.install("mealworker_heartbeat")

    async def main() -> Any:
        async with worker_for(jobs, handler, lease_seconds=1.5) as worker:
            (job,) = await worker.queue.claim("run-job", ["task"], 1, 1.5)
            claim = asyncio.create_task(worker.run_claimed(job))
            if during is not None:
                await until(lambda: jobs.faults.calls("mealworker_heartbeat") >= 1)
                during()
            return await claim

    return asyncio.run(main())


def test_run_job_writes_its_result_through_a_blip(jobs: Jobs) -> None:
    async def handler(job: ClaimedJob, context: JobContext) -> dict[str, int]:
        await asyncio.to_thread(jobs.faults.fail, "mealworker_complete_jobs", 2)
        return {"n": 1}

    (job_id,) = jobs.enqueue([{}])
    jobs.faults.install("mealworker_complete_jobs")
    claim = run_one(jobs, handler)
    assert claim.outcome == "completed"
    assert jobs.job(job_id)["status"] == "completed"
    assert jobs.faults.calls("mealworker_complete_jobs") == 3


def test_run_job_stops_when_an_operator_cancels(jobs: Jobs) -> None:
    async def handler(job: ClaimedJob, context: JobContext) -> None:
        await asyncio.sleep(30)

    (job_id,) = jobs.enqueue([{}])
    claim = run_one(jobs, handler, during=lambda: jobs.cancel(job_id))
    assert claim.outcome == "cancelled"
    assert jobs.job(job_id)["status"] == "cancelled"


def test_run_job_drops_its_result_when_the_lease_is_lost(jobs: Jobs) -> None:
    async def handler(job: ClaimedJob, context: JobContext) -> None:
        await asyncio.sleep(30)

    (job_id,) = jobs.enqueue([{}])

    def take_over() -> None:
        jobs.expire(job_id)
        jobs.requeue_stale()
        jobs.claim_as("other")

    claim = run_one(jobs, handler, during=take_over)
    assert claim.outcome == "lost"
    assert jobs.job(job_id)["locked_by"] == "other"


def test_a_worker_stopped_while_the_database_is_down_at_start_returns(jobs: Jobs) -> None:
    async def handler(job: ClaimedJob, context: JobContext) -> None:
        pass

    jobs.faults.fail("mealworker_register_worker", 10_000)

    async def main() -> None:
        async with worker_for(jobs, handler) as worker:
            running = asyncio.create_task(worker.run())
            await until(lambda: jobs.faults.calls("mealworker_register_worker") >= 2)
            assert worker.health.healthy()[0] is False  # 503 at once, not after a minute
            worker.stop()
            report = await running
            assert report.completed == 0

    asyncio.run(main())


def test_an_outage_is_reported_while_it_lasts(caplog: pytest.LogCaptureFixture) -> None:
    """Once as it starts, then with backoff but at least once a minute, then once at the end."""
    now = [0.0]
    health = Health(stale_after=60)
    outage = Outage(WorkerMetrics(), health, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="mealworker.worker"):
        for _ in range(600):  # ten minutes of failed calls, one a second
            outage.failed(ConnectionError("refused"))
            assert health.healthy()[0] is False
            now[0] += 1
        outage.recovered()
    lines = [r.getMessage() for r in caplog.records]
    started = [line for line in lines if line.startswith("database unavailable")]
    still = [line for line in lines if line.startswith("database still unavailable")]
    assert len(started) == 1
    assert 10 <= len(still) <= 16
    assert lines[-1].startswith("database reachable again after 600")
    assert health.healthy() == (True, "ok")


@pytest.mark.parametrize(("concurrency", "largest_claim"), [(4, 4), (200, 100)])
def test_a_large_worker_claims_half_its_slots_at_a_time_and_still_fills_them_all(
    jobs: Jobs, concurrency: int, largest_claim: int
) -> None:
    """From SPLIT_CLAIMS_FROM slots on, a claim takes half of them, so the next claim is on its
    way while the jobs of the last one run; a small worker claims all its free slots at once.
    Either way it runs as many jobs at once as it may."""
    release = asyncio.Event()
    claimed: list[int] = []

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        await release.wait()

    jobs.enqueue([{} for _ in range(concurrency + 6)])

    async def main() -> None:
        async with worker_for(jobs, handler, concurrency=concurrency) as worker:
            claim_next = worker.queue.claim_next

            async def recorded(*args: Any, **kwargs: Any) -> Any:
                completed, batch = await claim_next(*args, **kwargs)
                claimed.append(len(batch))
                return completed, batch

            worker.queue.claim_next = recorded  # type: ignore[method-assign]
            running = asyncio.create_task(worker.run())
            await until(lambda: jobs.statuses().count("processing") == concurrency)
            release.set()
            await until(lambda: set(jobs.statuses()) == {"completed"})
            worker.stop()
            report = await running
            assert report.completed == concurrency + 6

    asyncio.run(main())
    assert max(claimed) == largest_claim


def test_after_a_full_claim_the_next_claim_is_sent_before_its_jobs_start(jobs: Jobs) -> None:
    """Starting a batch (a task per job) waits until the next claim is on its way, so the
    database works on that claim while the worker starts the jobs, as long as slots are free
    once the claim is back; a claim that came back short starts its jobs at once."""
    steps: list[str] = []

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        return None

    jobs.enqueue([{} for _ in range(250)])

    async def main() -> None:
        async with worker_for(jobs, handler, concurrency=200, until_empty=True) as worker:
            claim_next, start_all = worker.queue.claim_next, worker.lifecycle.start_all

            async def claim(*args: Any, **kwargs: Any) -> Any:
                steps.append("claim")
                completed, batch = await claim_next(*args, **kwargs)
                steps.append(f"got {len(batch)}")
                return completed, batch

            def started(batch: list[ClaimedJob], *args: Any) -> Any:
                steps.append("start")
                return start_all(batch, *args)

            worker.queue.claim_next = claim  # type: ignore[method-assign]
            worker.lifecycle.start_all = started  # type: ignore[method-assign,assignment]
            report = await worker.run()
            assert report.completed == 250

    asyncio.run(main())
    # The second batch took the last free slots when its claim went out; the first batch's
    # handlers ended during that claim, so it too waits for the next claim to be sent.
    assert steps[:8] == [
        "claim",
        "got 100",
        "claim",
        "start",
        "got 100",
        "claim",
        "start",
        "got 50",
    ]
    assert steps[8] == "start"


def test_a_stop_while_a_full_claim_waits_to_start_releases_all_it_holds(jobs: Jobs) -> None:
    """The stop comes after a full batch was claimed and before it started, while the next
    claim is on its way: both batches are started and then given back, none left
    processing."""
    release = asyncio.Event()

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        await release.wait()

    jobs.enqueue([{} for _ in range(250)])

    async def main() -> None:
        async with worker_for(jobs, handler, concurrency=200) as worker:
            claim_next = worker.queue.claim_next
            calls = 0

            async def claim(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                if calls == 2:
                    assert worker.lifecycle.claims.running == 0  # the first batch waits
                    worker.stop()
                return await claim_next(*args, **kwargs)

            worker.queue.claim_next = claim  # type: ignore[method-assign]
            report = await worker.run()
            assert (report.released, report.completed, calls) == (200, 0, 2)

    asyncio.run(main())
    assert sorted(jobs.statuses()) == ["pending"] * 250


def test_the_time_limit_stops_a_slow_handler_and_spares_a_failure_being_written(
    jobs: Jobs,
) -> None:
    """A handler past ``job_timeout`` is stopped and its job failed as retryable; a handler
    that failed in time is not cut off by the limit while its failure waits out a blip."""

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        if job.payload["slow"]:
            await asyncio.sleep(30)
        raise ProviderUnavailableError("rate limited")

    slow, quick = jobs.enqueue([{"slow": True}, {"slow": False}], max_attempts=1)
    jobs.faults.fail("mealworker_fail_job", 3)  # the quick one's failure meets an outage

    async def main() -> None:
        async with worker_for(
            jobs, handler, concurrency=2, job_timeout=0.5, lease_seconds=3
        ) as worker:
            running = asyncio.create_task(worker.run())
            await until(lambda: set(jobs.statuses()) == {"failed"})
            worker.stop()
            report = await running
            assert report.failed == 2

    asyncio.run(main())
    assert jobs.job(slow)["last_error"] == "timed out after 0.5s"
    assert jobs.job(quick)["last_error"] == "rate limited"


def worker_gc_settings(url: str, threshold: str = "") -> list[int]:
    """The freeze count and the collector's thresholds after a worker ran in a new process
    (``threshold``, "young,middle,old", set by the program first)."""
    code = (
        "import asyncio, gc, sys\n"
        "from tests.process.test_worker_lifecycle import Jobs, worker_for\n"
        "async def noop(job, context): return None\n"
        "async def main():\n"
        "    assert gc.get_freeze_count() == 0\n"
        "    if sys.argv[2]:\n"
        "        gc.set_threshold(*map(int, sys.argv[2].split(',')))\n"
        "    async with worker_for(Jobs(sys.argv[1]), noop, until_empty=True) as worker:\n"
        "        await worker.run()\n"
        "    print(gc.get_freeze_count(), *gc.get_threshold())\n"
        "asyncio.run(main())\n"
    )
    return numbers_printed_by(code, url, threshold)


def numbers_printed_by(code: str, *args: str) -> list[int]:
    """Run ``code`` in a new Python process at the project's root (the collector's state is
    the process's: a test's own process has long been settled)."""
    printed = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    return [int(word) for word in printed.split()]


def test_a_running_worker_has_frozen_its_start_up_heap(jobs: Jobs) -> None:
    """Full collections would otherwise walk every module and pool on each pass (a ~10 ms
    stall); in a process where nothing was frozen yet, the worker freezes it when it starts."""
    frozen, *_ = worker_gc_settings(jobs.url)
    assert frozen > 1000


def test_freezing_the_start_up_heap_walks_no_old_objects() -> None:
    """A full collection before the freeze took 10-12 ms of every worker's start; only the
    young generations are collected."""
    code = (
        "import gc\n"
        "import mealplan_cli.core.worker\n"
        "from mealplan_cli.core.worker.heap import settle_garbage_collector\n"
        "full = gc.get_stats()[2]['collections']\n"
        "settle_garbage_collector()\n"
        "print(gc.get_stats()[2]['collections'] - full, gc.get_freeze_count())\n"
    )
    full_collections, frozen = numbers_printed_by(code)
    assert full_collections == 0
    assert frozen > 1000


def test_a_worker_collects_young_objects_every_10000_unless_the_program_chose(
    jobs: Jobs,
) -> None:
    """Python's 700 walks every running job's objects while they live; a threshold the
    program set itself is its own business."""
    _, *thresholds = worker_gc_settings(jobs.url)
    if sys.version_info < (3, 14):  # where Python's default is 700
        assert thresholds[0] == 10_000
    _, *chosen = worker_gc_settings(jobs.url, "900,5,5")
    assert chosen == [900, 5, 5]
