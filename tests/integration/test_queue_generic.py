"""The generic job protocol over a real PostgreSQL: any job type, delays, idempotency keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.queue import Completion, Queue


def run(url: str, body: Any) -> Any:
    async def main() -> Any:
        db = await PostgresDatabase(url).open()
        try:
            return await body(Queue(db))
        finally:
            await db.close()

    return asyncio.run(main())


def test_a_delayed_job_is_not_claimed_before_its_time(database_url: str) -> None:
    async def body(queue: Queue) -> None:
        later = await queue.enqueue("thumbnail", {"id": 1}, delay=3600)
        soon = await queue.enqueue("thumbnail", {"id": 2})
        at = datetime.now(UTC) + timedelta(hours=1)
        (bulk,) = await queue.enqueue_jobs("thumbnail", [{"id": 3}], run_at=at)
        claimed = await queue.claim("w", ["thumbnail"], 10, 30)
        assert [job.id for job in claimed] == [soon.job_id]
        info = await queue.get_job(later.job_id)
        assert info is not None
        assert info.run_at is not None
        assert info.run_at > datetime.now(UTC) + timedelta(minutes=59)
        bulk_info = await queue.get_job(bulk)
        assert bulk_info is not None
        assert bulk_info.run_at == at

    run(database_url, body)


def test_an_idempotency_key_makes_one_job_per_type(database_url: str) -> None:
    async def body(queue: Queue) -> None:
        first = await queue.enqueue("email", {"to": "a"}, idempotency_key="welcome-42")
        again = await queue.enqueue("email", {"to": "b"}, idempotency_key="welcome-42")
        other = await queue.enqueue("sms", {}, idempotency_key="welcome-42")
        assert (first.created, again.created, other.created) == (True, False, True)
        assert again.job_id == first.job_id != other.job_id
        (job,) = await queue.claim("w", ["email"], 10, 30)
        assert job.payload == {"to": "a"}
        assert await queue.complete([Completion(job, {"sent": True})]) == {job.id}

    run(database_url, body)
