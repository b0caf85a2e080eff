"""The worker loop's edge cases, fast, over an in-memory ``Database`` (tests/memory_db.py).

Each case here broke before claims were records keyed by their lease token: a lost lease then
a re-claim by the same worker, a cancel then a requeue, a completion written through a blip,
and ``run-job`` going through the same lifecycle as ``work``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mealplan_cli.errors import ProviderUnavailableError
from mealplan_cli.handlers import HandlerRegistry, JobContext
from mealplan_cli.metrics import Health, WorkerMetrics
from mealplan_cli.queue import ClaimedJob, Queue
from mealplan_cli.worker import Worker, WorkerConfig
from mealplan_cli.worker.outage import Outage
from tests.memory_db import MemoryDatabase

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[ClaimedJob, JobContext], Awaitable[Any]]


def worker_for(db: MemoryDatabase, handler: Handler, **config: Any) -> Worker:
    handlers = HandlerRegistry()
    handlers.register("task", handler)
    values: dict[str, Any] = {
        "worker_id": "w1",
        "poll_interval": 0.02,
        "lease_seconds": 0.6,
        "sweep_interval": 3600,
        "shutdown_grace": 0,
        **config,
    }
    return Worker(Queue(db), handlers, WorkerConfig(**values))


async def until(predicate: Callable[[], bool], seconds: float = 10) -> None:
    """Poll ``predicate`` with a deadline."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110  (no event to wait on: the state is the db's)
            await asyncio.sleep(0.01)


def test_a_lost_lease_then_a_reclaim_by_the_same_worker_starts_clean() -> None:
    """The first run is stopped when the job is claimed again; the second run's failure is
    recorded (it used to be dropped, as if that claim had been lost too)."""
    db = MemoryDatabase()
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

    async def main() -> None:
        db._enqueue_jobs("task", [{}], p_max_attempts=2)
        worker = worker_for(db, handler, concurrency=2)
        running = asyncio.create_task(worker.run())
        await until(lambda: runs == 1)
        db.expire(1)  # as if this worker had stalled past its lease
        assert db._requeue_stale() == [{"job_id": 1, "status": "pending"}]
        await until(lambda: db.jobs[1].status == "failed")
        worker.stop()
        report = await running
        assert (report.failed, report.lost, report.released) == (1, 1, 0)

    asyncio.run(main())
    job = db.jobs[1]
    assert (job.status, job.last_error, job.lease_token) == ("failed", "rate limited", None)
    assert runs == 2


def test_a_cancelled_then_requeued_job_is_released_at_shutdown_not_cancelled_again() -> None:
    db = MemoryDatabase()
    runs = 0

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(30)

    async def main() -> None:
        db._enqueue_jobs("task", [{}])
        worker = worker_for(db, handler, lease_seconds=0.3)
        running = asyncio.create_task(worker.run())
        await until(lambda: runs == 1)
        db._cancel_jobs([1])
        await until(lambda: db.jobs[1].status == "cancelled")
        db._requeue_jobs([1], ["cancelled"])
        await until(lambda: runs == 2)
        worker.stop()
        report = await running
        assert report.released == 1

    asyncio.run(main())
    job = db.jobs[1]
    assert (job.status, job.attempts) == ("pending", 1)
    assert job.last_error == "cancelled by an operator"  # from the first claim only


def test_a_completion_during_shutdown_survives_a_blip_and_is_not_redone() -> None:
    db = MemoryDatabase()
    runs = 0
    worker: Worker

    async def handler(job: ClaimedJob, context: JobContext) -> dict[str, str]:
        nonlocal runs
        runs += 1
        db.fail("mealworker_complete_jobs", 3)
        worker.stop()  # SIGTERM arrives just as the plan is finished
        return {"plan": "expensive"}

    async def main() -> None:
        nonlocal worker
        db._enqueue_jobs("task", [{}])
        worker = worker_for(db, handler, lease_seconds=30)
        report = await worker.run()
        assert report.completed == 1

    asyncio.run(main())
    assert runs == 1
    assert (db.jobs[1].status, db.jobs[1].result) == ("completed", {"plan": "expensive"})
    assert db.calls["mealworker_complete_jobs"] == 4
    assert db.calls["mealworker_fail_job"] == 0


def test_a_completion_is_given_up_when_the_lease_would_have_expired() -> None:
    db = MemoryDatabase()

    async def handler(job: ClaimedJob, context: JobContext) -> dict[str, str]:
        db.fail("mealworker_complete_jobs", 10_000)
        return {"plan": "late"}

    async def main() -> None:
        db._enqueue_jobs("task", [{}])
        worker = worker_for(db, handler, lease_seconds=0.5, until_empty=True)
        report = await worker.run()
        assert (report.completed, report.lost) == (0, 1)

    asyncio.run(main())
    assert db.jobs[1].status == "processing"  # left to the stale sweep, never half-written


def run_one(
    db: MemoryDatabase, handler: Handler, during: Callable[[], object] | None = None
) -> Any:
    async def main() -> Any:
        db._enqueue_jobs("task", [{}])
        worker = worker_for(db, handler, lease_seconds=0.3)
        (job,) = await worker.queue.claim("run-job", ["task"], 1, 0.3)
        claim = asyncio.create_task(worker.run_claimed(job))
        if during is not None:
            await until(lambda: db.calls["mealworker_heartbeat"] >= 1)
            during()
        return await claim

    return asyncio.run(main())


def test_run_job_writes_its_result_through_a_blip() -> None:
    db = MemoryDatabase()

    async def handler(job: ClaimedJob, context: JobContext) -> dict[str, int]:
        db.fail("mealworker_complete_jobs", 2)
        return {"n": 1}

    claim = run_one(db, handler)
    assert claim.outcome == "completed"
    assert db.jobs[1].status == "completed"


def test_run_job_stops_when_an_operator_cancels() -> None:
    db = MemoryDatabase()

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        await asyncio.sleep(30)

    claim = run_one(db, handler, during=lambda: db._cancel_jobs([1]))
    assert claim.outcome == "cancelled"
    assert db.jobs[1].status == "cancelled"


def test_run_job_drops_its_result_when_the_lease_is_lost() -> None:
    db = MemoryDatabase()

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        await asyncio.sleep(30)

    def take_over() -> None:
        db.expire(1)
        db._requeue_stale()
        db._claim_jobs("other", ["task"], 1, 60)

    claim = run_one(db, handler, during=take_over)
    assert claim.outcome == "lost"
    assert db.jobs[1].locked_by == "other"


def test_a_worker_stopped_while_the_database_is_down_at_start_returns() -> None:
    db = MemoryDatabase()
    db.down = True

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        pass

    async def main() -> None:
        worker = worker_for(db, handler)
        running = asyncio.create_task(worker.run())
        await until(lambda: db.calls["mealworker_register_worker"] >= 2)
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


class RecordingDatabase(MemoryDatabase):
    """Remembers the limit of every claim."""

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[int] = []

    async def call(self, function: str, **params: Any) -> list[dict[str, Any]]:
        if function == "mealworker_claim_next":
            self.limits.append(int(params["p_limit"]))
        return await super().call(function, **params)


@pytest.mark.parametrize(("concurrency", "largest_claim"), [(4, 4), (200, 100)])
def test_a_large_worker_claims_half_its_slots_at_a_time_and_still_fills_them_all(
    concurrency: int, largest_claim: int
) -> None:
    """From SPLIT_CLAIMS_FROM slots on, a claim takes half of them, so the next claim is on its
    way while the jobs of the last one run; a small worker claims all its free slots at once.
    Either way it runs as many jobs at once as it may."""
    db = RecordingDatabase()
    release = asyncio.Event()

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        await release.wait()

    async def main() -> None:
        db._enqueue_jobs("task", [{} for _ in range(concurrency + 6)])
        worker = worker_for(db, handler, concurrency=concurrency)
        running = asyncio.create_task(worker.run())
        await until(
            lambda: sum(job.status == "processing" for job in db.jobs.values()) == concurrency
        )
        release.set()
        await until(lambda: all(job.status == "completed" for job in db.jobs.values()))
        worker.stop()
        report = await running
        assert report.completed == concurrency + 6
        assert max(db.limits) == largest_claim

    asyncio.run(main())


def test_the_time_limit_stops_a_slow_handler_and_spares_a_failure_being_written() -> None:
    """A handler past ``job_timeout`` is stopped and its job failed as retryable; a handler
    that failed in time is not cut off by the limit while its failure waits out a blip."""
    db = MemoryDatabase()

    async def handler(job: ClaimedJob, context: JobContext) -> None:
        if job.payload["slow"]:
            await asyncio.sleep(30)
        raise ProviderUnavailableError("rate limited")

    async def main() -> None:
        db._enqueue_jobs("task", [{"slow": True}, {"slow": False}], p_max_attempts=1)
        db.fail("mealworker_fail_job", 3)  # the quick one's failure meets an outage
        worker = worker_for(db, handler, concurrency=2, job_timeout=0.2)
        running = asyncio.create_task(worker.run())
        await until(lambda: all(job.status == "failed" for job in db.jobs.values()))
        worker.stop()
        report = await running
        assert report.failed == 2
        assert db.jobs[1].last_error == "timed out after 0.2s"
        assert db.jobs[2].last_error == "rate limited"

    asyncio.run(main())


def test_a_running_worker_has_frozen_its_start_up_heap() -> None:
    """Full collections would otherwise walk every module and pool on each pass (a ~10 ms
    stall); in a process where nothing was frozen yet, the worker freezes it when it starts."""
    code = (
        "import asyncio, gc\n"
        "from tests.memory_db import MemoryDatabase\n"
        "from tests.test_worker_lifecycle import worker_for\n"
        "async def noop(job, context): return None\n"
        "async def main():\n"
        "    assert gc.get_freeze_count() == 0\n"
        "    worker = worker_for(MemoryDatabase(), noop, until_empty=True)\n"
        "    await worker.run()\n"
        "    print(gc.get_freeze_count())\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).resolve().parents[1]
    frozen = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert int(frozen) > 1000
