"""Programs written against mealworker 0.1's library API keep working.

The peer benchmark's adapter (``bench-peers/peer_mealworker.py``, outside this repository) is
one such program: it imports exactly these names and builds its worker this way. This test
does the same, so a change that would break it fails here first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mealplan_cli.core.db.connect import open_database
from mealplan_cli.core.queue import ClaimedJob, Queue
from mealplan_cli.core.worker import Worker, WorkerConfig
from mealplan_cli.handlers import JobContext, default_handlers
from mealplan_cli.mealplans.generation import generation_services
from mealplan_cli.settings.config import Settings


def test_the_0_1_worker_api_drains_a_custom_job_type(database_url: str) -> None:
    seen: list[int] = []

    async def noop(job: ClaimedJob, context: JobContext) -> None:
        seen.append(job.payload["i"])

    async def body() -> Any:
        settings = Settings(database_url=database_url, max_concurrent_jobs=50)
        async with open_database(settings) as db:
            await Queue(db).enqueue_jobs("noop", [{"i": i} for i in range(20)])
        handlers = default_handlers()
        handlers.register("noop", noop)
        config = WorkerConfig(
            concurrency=settings.max_concurrent_jobs,
            poll_interval=settings.poll_interval_ms / 1000,
            lease_seconds=settings.lease_seconds,
            job_timeout=settings.job_timeout_seconds,
            shutdown_grace=settings.shutdown_grace_seconds,
            sweep_interval=settings.stale_sweep_seconds,
            until_empty=True,
        )
        async with (
            open_database(settings, pool_size=4, keep_open=True) as db,
            generation_services(settings) as services,
        ):
            worker = Worker(Queue(db), handlers, services, config)
            return await asyncio.wait_for(worker.run(), 60)

    report = asyncio.run(body())
    assert sorted(seen) == list(range(20))
    assert report.completed == 20
    assert {"generate_meal_plan", "ping"} <= set(default_handlers())


def test_a_worker_without_a_config_is_refused() -> None:
    with pytest.raises(TypeError, match="config"):
        Worker(None, default_handlers(), object())  # type: ignore[call-overload]
