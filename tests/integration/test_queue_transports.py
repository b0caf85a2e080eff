"""The job-level queue API, run over both transports: psycopg and Supabase's REST API.

The REST side goes through the real supabase-py client to the PostgREST-compatible server in
``tests/fakes``; both sides hit the same fresh database. Anything about LISTEN is psycopg-only
and tested elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pydantic import SecretStr

from mealplan_cli.core.db.base import (
    DatabaseError,
    DatabaseUnavailableError,
    SchemaMissingError,
)
from mealplan_cli.core.db.rest import RestDatabase
from mealplan_cli.core.queue import Completion, Queue
from mealplan_cli.mealplans.generation.images import CachedPhoto
from mealplan_cli.mealplans.generation.models import Photo
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.plans import DatabaseImageCache, MealPlans
from tests.fakes.postgrest_server import FakePostgrest
from tests.helpers.transports import SECRET_KEY, Opener, run


@pytest.fixture
def postgrest(database_url: str) -> Iterator[FakePostgrest]:
    with FakePostgrest(database_url, secret_keys=[SECRET_KEY]) as server:
        yield server


def test_enqueue_claim_complete_writes_the_plan(open_db: Opener, database_url: str) -> None:
    async def body(queue: Queue) -> None:
        queued = await MealPlans(queue.db).enqueue(parse_request({"days": 1}), idempotency_key=None)
        (job,) = await queue.claim("w1", ["generate_meal_plan"], 5, 30)
        assert job.id == queued.job_id
        assert job.payload["request"]["days"] == 1
        assert await queue.report_progress(job, {"stage": "day", "done": 1, "total": 1})
        written = await queue.complete([Completion(job, {"plan": {"ok": True}, "usage": {}})])
        assert written == {job.id}
        plan = await MealPlans(queue.db).get(queued.meal_plan_id)
        assert plan is not None
        assert (plan.status, plan.plan) == ("completed", {"ok": True})

    run(open_db, body)


def test_claims_follow_priority_and_job_types(open_db: Opener) -> None:
    async def body(queue: Queue) -> None:
        low = await queue.enqueue_jobs("ping", [{}], priority=0)
        high = await queue.enqueue_jobs("ping", [{}], priority=9)
        await queue.enqueue_jobs("other", [{}], priority=99)
        claimed = await queue.claim("w1", ["ping"], 10, 30)
        assert [job.id for job in claimed] == high + low

    run(open_db, body)


def test_a_lost_lease_writes_nothing(open_db: Opener) -> None:
    async def body(queue: Queue) -> None:
        await queue.enqueue_jobs("ping", [{}])
        (job,) = await queue.claim("w1", ["ping"], 1, 30)
        stale = type(job)(**{**job.__dict__, "lease_token": job.lease_token.__class__(int=1)})
        assert await queue.complete([Completion(stale, None)]) == set()
        assert await queue.fail(stale, "late", retryable=True) is None
        assert not await queue.report_progress(stale, {"stage": "x"})
        lost = await queue.heartbeat("w1", [stale], 30)
        assert [(lease.job_id, lease.reason) for lease in lost] == [(job.id, "lost")]
        assert await queue.complete([Completion(job, None)]) == {job.id}

    run(open_db, body)


def test_job_ids_and_lease_tokens_pass_in_any_form(open_db: Opener) -> None:
    """Ids and tokens travel as arrays (binary over psycopg): ints or strings, UUIDs or their
    text, a NULL among them, or none at all."""

    async def body(queue: Queue) -> None:
        await queue.enqueue_jobs("ping", [{}, {}, {}])
        first, second, third = await queue.claim("w1", ["ping"], 3, 30)
        call = queue.db.call
        empty = await call(
            "mealworker_complete_jobs", p_job_ids=[], p_lease_tokens=[], p_results=[]
        )
        assert empty == []
        rows = await call(
            "mealworker_complete_jobs",
            p_job_ids=[first.id, None, 2**40],
            p_lease_tokens=[first.lease_token, third.lease_token, None],
            p_results=[None, None, None],
        )
        assert [int(next(iter(row.values()))) for row in rows] == [first.id]
        rows = await call(
            "mealworker_complete_jobs",
            p_job_ids=[str(second.id), str(third.id)],
            p_lease_tokens=[str(second.lease_token), third.lease_token],
            p_results=[{"ok": 2}, None],
        )
        assert sorted(int(next(iter(row.values()))) for row in rows) == [second.id, third.id]

    run(open_db, body)


def test_payloads_round_trip_any_text(open_db: Opener) -> None:
    payload = {"dish": "crème brûlée 🍮", "note": 'a "quoted" \\ back-slashed\nline'}

    async def body(queue: Queue) -> None:
        await queue.enqueue_jobs("ping", [payload])
        (job,) = await queue.claim("w1", ["ping"], 1, 30)
        assert job.payload == payload

    run(open_db, body)


def test_failures_retry_then_fail(open_db: Opener) -> None:
    async def body(queue: Queue) -> None:
        (job_id,) = await queue.enqueue_jobs("ping", [{}], max_attempts=2)
        (job,) = await queue.claim("w1", ["ping"], 1, 30)
        assert await queue.fail(job, "rate limited", retryable=True) == "pending"
        info = await queue.get_job(job_id)
        assert info is not None
        assert (info.status, info.attempts, info.last_error) == ("pending", 1, "rate limited")
        retried = await queue.claim_job(job_id, "w1", 30)
        assert retried is not None
        assert await queue.fail(retried, "rate limited again", retryable=True) == "failed"

    run(open_db, body)


def test_release_does_not_count_the_attempt(open_db: Opener) -> None:
    async def body(queue: Queue) -> None:
        (job_id,) = await queue.enqueue_jobs("ping", [{}])
        (job,) = await queue.claim("w1", ["ping"], 1, 30)
        assert await queue.release("w1", [job]) == 1
        info = await queue.get_job(job_id)
        assert info is not None
        assert (info.status, info.attempts) == ("pending", 0)

    run(open_db, body)


def test_stale_leases_are_requeued(open_db: Opener, database_url: str) -> None:
    async def body(queue: Queue) -> None:
        (job_id,) = await queue.enqueue_jobs("ping", [{}])
        await queue.claim("w1", ["ping"], 1, 30)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("update public.background_jobs set lease_expires_at = now()")
        assert await queue.requeue_stale() == [(job_id, "pending")]

    run(open_db, body)


def test_workers_stats_events_and_the_image_cache(open_db: Opener) -> None:
    async def body(queue: Queue) -> None:
        await queue.register_worker("w1", "vps-1", 42, "0.1.0", 4, ["ping"])
        await queue.enqueue_jobs("ping", [{}, {}])
        stats = await queue.stats()
        assert stats["by_status"]["pending"] == 2
        events = await queue.events_since(0)
        assert [event["event"] for event in events] == ["enqueued", "enqueued"]
        await queue.stop_worker("w1")
        cache = DatabaseImageCache(queue.db)
        assert await cache.get("dal") is None
        photo = Photo(
            id="p1",
            url="u",
            thumb_url="t",
            photographer_name="A",
            photographer_url="x",
            unsplash_url="y",
            attribution="Photo by A on Unsplash",
        )
        await cache.put("dal", photo)
        await cache.put("nothing", None)
        assert await cache.get("dal") == CachedPhoto(photo)
        assert await cache.get("nothing") == CachedPhoto(None)

    run(open_db, body)


def rest(server: FakePostgrest, key: str) -> Opener:
    return lambda: RestDatabase(server.base_url, SecretStr(key)).open()


def test_a_503_is_an_outage_the_worker_retries(postgrest: FakePostgrest) -> None:
    postgrest.inject("db_down")

    async def body(queue: Queue) -> None:
        with pytest.raises(DatabaseUnavailableError):
            await queue.stats()
        assert (await queue.stats())["by_status"]["pending"] == 0

    run(rest(postgrest, postgrest.service_role_key), body)


def test_a_dropped_connection_is_an_outage(postgrest: FakePostgrest) -> None:
    postgrest.inject("drop_connection")

    async def body(queue: Queue) -> None:
        with pytest.raises(DatabaseUnavailableError, match="cannot reach"):
            await queue.stats()

    run(rest(postgrest, postgrest.service_role_key), body)


def test_the_anon_key_is_refused_with_advice_and_without_the_key(
    postgrest: FakePostgrest,
) -> None:
    async def body(queue: Queue) -> None:
        with pytest.raises(DatabaseError, match="SUPABASE_SERVICE_ROLE_KEY") as caught:
            await queue.stats()
        assert postgrest.anon_key not in str(caught.value)

    run(rest(postgrest, postgrest.anon_key), body)


def test_a_missing_function_says_to_migrate(postgrest: FakePostgrest) -> None:
    async def body(queue: Queue) -> None:
        with pytest.raises(SchemaMissingError, match="migrate --sql"):
            await queue.db.call("mealworker_no_such_function", p_x=1)

    run(rest(postgrest, postgrest.service_role_key), body)
