"""The fleet's OpenAI budget: real PostgreSQL (directly and through PostgREST), the real
openai client, and a loopback OpenAI that enforces an organisation's limit as OpenAI does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from openai import AsyncOpenAI
from psycopg.rows import dict_row
from pydantic import BaseModel

from mealplan_cli.core.db.base import Database
from mealplan_cli.core.db.connect import open_database
from mealplan_cli.mealplans.budget import DatabaseBudget, budget_key
from mealplan_cli.mealplans.generation.budget import RateLimits, duration_ms, estimate_prompt_tokens
from mealplan_cli.mealplans.generation.openai_calls import StructuredCalls, Tally
from mealplan_cli.mealplans.generation.planner_prompts import INSTRUCTIONS
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.plans import MealPlans
from mealplan_cli.ops.redact import SecretStr
from mealplan_cli.runtime import open_runtime
from mealplan_cli.settings.config import Settings
from tests.conftest import OPENAI_TEST_KEY, openai_settings
from tests.fakes.openai_server import ChatRequest, FakeOpenAI, Fault
from tests.fakes.rate_budget import RateBudget, charge_of

MODEL = "gpt-4o-mini"
RESERVE = 40_000
"""max_completion_tokens of each test call: the charge is mostly this, so the arithmetic of
the limits below stays simple."""


class Echo(BaseModel):
    text: str


def echo(request: ChatRequest) -> dict[str, Any]:
    return {"text": "ok"}


@pytest.fixture
def limited_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(echo, api_key=OPENAI_TEST_KEY) as fake:
        # 120 calls' worth a minute: a burst of 120, then one call every half second.
        fake.budget = RateBudget(tokens_per_minute=120 * (RESERVE + 100))
        yield fake


@asynccontextmanager
async def worker_calls(
    settings: Settings, fake: FakeOpenAI
) -> AsyncIterator[tuple[StructuredCalls, DatabaseBudget]]:
    """One worker's view: its own database connection, budget object and OpenAI client."""
    async with open_database(settings) as db:
        budget = DatabaseBudget(db, budget_key(OPENAI_TEST_KEY, fake.base_url))
        client = AsyncOpenAI(api_key=OPENAI_TEST_KEY, base_url=fake.base_url, max_retries=0)
        try:
            yield StructuredCalls(client, MODEL, 4, None, budget), budget
        finally:
            await client.close()


async def call_many(calls: StructuredCalls, count: int, concurrency: int = 4) -> Tally:
    tally = Tally()
    left = iter(range(count))

    async def lane() -> None:
        for _ in left:
            await calls.parse(Echo, "say ok", tally, RESERVE)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return tally


def budget_rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute("select * from public.mealworker_budget_stats()").fetchall()


def test_our_estimate_is_never_below_what_the_fake_charges(
    limited_openai: FakeOpenAI,
) -> None:
    async def main() -> None:
        client = AsyncOpenAI(
            api_key=OPENAI_TEST_KEY, base_url=limited_openai.base_url, max_retries=0
        )
        async with client:
            await StructuredCalls(client, MODEL, 1, None).parse(Echo, "say ok", Tally(), 100)

    asyncio.run(main())
    sent = limited_openai.requests[-1]
    ours = estimate_prompt_tokens([{"content": INSTRUCTIONS}, {"content": "say ok"}], Echo)
    assert ours + 100 >= charge_of(sent.body, sent.prompt_text)


@pytest.mark.slow
def test_two_workers_sharing_a_budget_never_exceed_it(
    limited_openai: FakeOpenAI, db_settings: Settings, database_url: str
) -> None:
    """150 calls where the fake's limit lets 120 through at once: without the shared budget
    the last 30 are refused (and retried); with it they wait their turn and none is refused."""
    started = time.monotonic()

    async def main() -> list[Tally]:
        async with (
            worker_calls(db_settings, limited_openai) as (one, _),
            worker_calls(db_settings, limited_openai) as (two, _),
        ):
            return list(await asyncio.gather(call_many(one, 75), call_many(two, 75)))

    tallies = asyncio.run(main())
    elapsed = time.monotonic() - started
    fake_budget = limited_openai.budget
    assert fake_budget is not None
    assert fake_budget.refused == 0
    assert fake_budget.answered == 150
    assert sum(t.usage.rate_limited for t in tallies) == 0
    # The budget held calls back (30 calls past the burst at 2 a second), not much longer.
    assert 10 <= elapsed < 40
    [row] = budget_rows(database_url)
    assert row["tokens_limit"] == fake_budget.tokens_per_minute
    assert row["requests_charged"] == 150
    assert row["waited_ms"] > 5_000


@pytest.mark.slow
def test_a_429_empties_the_budget_for_every_worker(
    limited_openai: FakeOpenAI, db_settings: Settings, database_url: str
) -> None:
    """The key is used elsewhere (the fake's bucket emptied behind the workers' backs): the
    first call to meet the 429 empties the shared budget, and the other worker then waits for
    the refill instead of being refused in turn."""
    fake_budget = limited_openai.budget
    assert fake_budget is not None
    refill_seconds = 60 / 120  # one call's charge

    async def main() -> tuple[float, float, Tally]:
        async with (
            worker_calls(db_settings, limited_openai) as (one, _),
            worker_calls(db_settings, limited_openai) as (two, _),
        ):
            await call_many(one, 1, 1)  # both learn the limit
            await call_many(two, 1, 1)
            fake_budget.empty()
            started = time.monotonic()
            refused = await call_many(one, 1, 1)
            first = time.monotonic() - started
            started = time.monotonic()
            await call_many(two, 2, 1)
            second = time.monotonic() - started
            return first, second, refused

    first, second, refused = asyncio.run(main())
    assert fake_budget.refused == 1
    assert refused.usage.rate_limited == 1
    assert first >= refill_seconds * 0.9  # waited for the refill after the 429
    assert second >= 2 * refill_seconds * 0.9  # the other worker waited too, unrefused
    [row] = budget_rows(database_url)
    assert row["refused"] == 1


@pytest.mark.slow
def test_a_rate_limit_wait_keeps_the_lease_and_spends_no_attempt(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    """A whole plan through the worker with a lease of one second, while the organisation's
    budget makes it wait several: the heartbeat keeps the lease, 429s cost no attempt (of the
    call or of the job), and the job completes on its first."""
    fake_openai.budget = RateBudget(tokens_per_minute=1_200_000)  # 20,000 tokens a second
    fake_openai.budget.empty()  # spent elsewhere: every call waits for the refill
    # And five calls in a row are refused all the same: more than a call's four attempts.
    fake_openai.retry_after = "0.2"
    fake_openai.inject(Fault.rate_limit, times=5)
    settings = openai_settings(fake_openai, database_url=SecretStr(database_url))

    async def main() -> Any:
        async with open_runtime(settings) as rt:
            enqueued = await MealPlans(rt.db).enqueue(MealPlanRequest(days=3))
            started = time.monotonic()
            await asyncio.wait_for(
                rt.run_worker(signals=None, until_empty=True, lease_seconds=1.0), 120
            )
            return enqueued, time.monotonic() - started

    enqueued, elapsed = asyncio.run(main())
    assert elapsed > 2.0  # the budget made it wait past two leases
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        job = conn.execute(
            "select status, attempts from public.background_jobs where id = %s",
            (enqueued.job_id,),
        ).fetchone()
        events = [
            r["event"]
            for r in conn.execute(
                "select event from public.background_job_events where job_id = %s order by id",
                (enqueued.job_id,),
            )
        ]
        plan = conn.execute(
            "select status, usage from public.meal_plans where id = %s",
            (enqueued.meal_plan_id,),
        ).fetchone()
    assert job == {"status": "completed", "attempts": 1}
    assert "retry_scheduled" not in events
    # (A heartbeat in flight as the job completes may log a lease_lost after it: benign.)
    assert "lease_lost" not in events[: events.index("completed")]
    assert plan is not None
    assert plan["status"] == "completed"
    assert plan["usage"]["rate_limited"] >= 5  # the five refusals, spent on no attempt


def test_rate_limit_headers_are_read_as_openai_writes_them() -> None:
    limits = RateLimits.from_headers(
        {
            "x-ratelimit-limit-tokens": "2000000",
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-remaining-tokens": "1999000",
            "x-ratelimit-reset-tokens": "6m0s",
            "x-ratelimit-reset-requests": "12ms",
        }
    )
    assert limits == RateLimits(
        tokens_limit=2_000_000,
        requests_limit=5000,
        tokens_remaining=1_999_000,
        tokens_reset_ms=360_000,
        requests_reset_ms=12,
    )
    assert duration_ms("1m5.5s") == 65_500
    assert duration_ms("soon") is None
    assert RateLimits.from_headers({"retry-after": "2"}).retry_after_ms == 2000


async def _take(db: Database, tokens: int, **params: Any) -> dict[str, Any]:
    rows = await db.call(
        "mealworker_budget_take", p_key="k", p_model="m", p_tokens=tokens, **params
    )
    return rows[0]


def test_the_take_function_probes_then_reserves_in_order(database_url: str) -> None:
    async def main() -> list[dict[str, Any]]:
        async with open_database(Settings(database_url=SecretStr(database_url))) as db:
            first = await _take(db, 10)  # nothing known: this one probes
            second = await _take(db, 10)  # a probe is out: ask again later
            await db.call(
                "mealworker_budget_learn",
                p_key="k",
                p_model="m",
                p_tokens_limit=60_000,
                p_requests_limit=1000,
            )
            full = await _take(db, 60_000)  # the whole bucket
            next_ = await _take(db, 30_000)  # half a minute of refill away
            halved = await _take(db, 1000, p_share=0.5)  # after it, at half the rate
            return [first, second, full, next_, halved]

    first, second, full, next_, halved = asyncio.run(main())
    assert (first["wait_ms"], first["reserved"]) == (0, True)
    assert second["reserved"] is False
    assert second["wait_ms"] > 0
    assert (full["wait_ms"], full["reserved"]) == (0, True)
    assert next_["reserved"] is True
    assert 29_000 <= next_["wait_ms"] <= 30_000
    assert halved["wait_ms"] >= 30_000


def test_a_retried_job_does_not_write_the_saved_days_again(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    """The first attempt fails on its last day (a 500 with no retries left); the second
    writes only that day: day 1's meals and the other day are not asked for again."""
    settings = openai_settings(
        fake_openai,
        database_url=SecretStr(database_url),
        openai_concurrency=1,
        openai_max_attempts=1,
    )
    fake_openai.inject(Fault.transform, times=5, transform=lambda answer: answer)
    fake_openai.inject(Fault.server_error)  # the sixth call: the last day

    async def attempt() -> Any:
        async with open_runtime(settings) as rt:
            await asyncio.wait_for(rt.run_worker(signals=None, until_empty=True), 60)

    async def enqueue() -> Any:
        async with open_database(settings) as db:
            return await MealPlans(db).enqueue(MealPlanRequest(days=3))

    enqueued = asyncio.run(enqueue())
    asyncio.run(attempt())
    first = list(fake_openai.requests)
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        saved = conn.execute(
            "select status, days from public.meal_plans where id = %s", (enqueued.meal_plan_id,)
        ).fetchone()
        conn.execute(
            "update public.background_jobs set run_at = now() where id = %s", (enqueued.job_id,)
        )
    assert saved is not None
    assert saved["status"] == "pending"
    assert len(saved["days"]) == 2  # day 1 and one more, kept for the retry
    asyncio.run(attempt())
    second = fake_openai.requests[len(first) :]
    day_prompts = [r.messages[-1]["content"] for r in second if r.schema_name == "DayPlan"]
    assert len(day_prompts) == 1
    missing = ({"1", "2", "3"} - set(saved["days"])).pop()
    assert f"write day {missing} of 3" in day_prompts[0]
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        job = conn.execute(
            "select status, attempts from public.background_jobs where id = %s",
            (enqueued.job_id,),
        ).fetchone()
        plan = conn.execute(
            "select status, plan, days from public.meal_plans where id = %s",
            (enqueued.meal_plan_id,),
        ).fetchone()
    assert job == {"status": "completed", "attempts": 2}
    assert plan is not None
    assert plan["status"] == "completed"
    assert [d["day"] for d in plan["plan"]["days"]] == [1, 2, 3]
    assert plan["days"] is None
    kept = {d["day"]: d["meals"] for d in plan["plan"]["days"]}
    for number, day in saved["days"].items():
        assert [m["title"] for m in kept[int(number)]] == [m["title"] for m in day["meals"]]


def test_stats_json_shows_the_budget(env: dict[str, str], database_url: str) -> None:
    from typer.testing import CliRunner

    from mealplan_cli.cli import app

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("select public.mealworker_budget_learn('key-x', 'm', 2000000, 5000)")
        conn.execute("select * from public.mealworker_budget_take('key-x', 'm', 1000)")
    result = CliRunner().invoke(app, ["stats", "--json"], env=env)
    assert result.exit_code == 0, result.stderr
    [budget] = json.loads(result.stdout)["budget"]
    assert budget["budget_key"] == "key-x"
    assert budget["tokens_limit"] == 2_000_000
    assert budget["tokens_charged"] == 1000
    assert budget["refused"] == 0


def test_metrics_count_tokens_charged_and_unforeseen_429s() -> None:
    from mealplan_cli.ops.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.handler_finished(
        "generate_meal_plan", 1.0, {"input_tokens": 10, "charged_tokens": 900, "rate_limited": 2}
    )
    text = metrics.render()
    assert 'mealworker_openai_tokens_total{kind="charged"} 900' in text
    assert "mealworker_openai_rate_limited_total 2" in text


@pytest.mark.parametrize("fallback", [False, True], ids=["fail", "catalogue"])
def test_the_daily_spend_cap_holds_and_says_why(
    fake_openai: FakeOpenAI, database_url: str, fallback: bool
) -> None:
    settings = openai_settings(
        fake_openai,
        database_url=SecretStr(database_url),
        openai_daily_token_cap=500,  # less than any call
        openai_daily_cap_fallback=fallback,
    )

    async def main() -> Any:
        async with open_runtime(settings) as rt:
            enqueued = await MealPlans(rt.db).enqueue(MealPlanRequest(days=2))
            await asyncio.wait_for(rt.run_worker(signals=None, until_empty=True), 60)
            return enqueued

    enqueued = asyncio.run(main())
    assert fake_openai.requests == []  # nothing was sent past the cap
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        job = conn.execute(
            "select status, attempts, last_error from public.background_jobs where id = %s",
            (enqueued.job_id,),
        ).fetchone()
        plan = conn.execute(
            "select status, plan from public.meal_plans where id = %s", (enqueued.meal_plan_id,)
        ).fetchone()
    assert job is not None
    assert plan is not None
    if fallback:
        assert plan["status"] == "completed"
        notes = plan["plan"]["metadata"]["validation"]["notes"]
        assert any("offline catalogue" in n and "daily OpenAI cap" in n for n in notes)
    else:  # a cap smaller than one call: waiting for the next day could never help
        assert (job["status"], job["attempts"]) == ("failed", 1)
        assert "more than the whole daily OpenAI cap of 500 tokens" in job["last_error"]
        assert "OPENAI_DAILY_TOKEN_CAP" in job["last_error"]


def test_the_shared_budget_can_be_turned_off(database_url: str) -> None:
    on = Settings(database_url=SecretStr(database_url), openai_api_key=SecretStr("sk-x"))
    off = on.model_copy(update={"openai_shared_budget": False})

    async def main() -> tuple[object, object]:
        async with open_database(on) as db:
            return DatabaseBudget.from_settings(db, on), DatabaseBudget.from_settings(db, off)

    shared, alone = asyncio.run(main())
    assert isinstance(shared, DatabaseBudget)
    assert alone is None


def test_a_wait_cancelled_gives_its_reservation_back(database_url: str) -> None:
    """A job cancelled while it waits for the budget (an operator's cancel, shutdown) must not
    leave its tokens reserved for a call that is never sent."""

    async def main() -> dict[str, Any]:
        async with open_database(Settings(database_url=SecretStr(database_url))) as db:
            # A call whose turn comes within a minute reserves at once and sleeps (with the
            # default quarter of a second, it would wait in line holding nothing).
            budget = DatabaseBudget(db, "k", lead=60.0, stale_after=120.0)
            await db.call(
                "mealworker_budget_learn",
                p_key="k",
                p_model="m",
                p_tokens_limit=60_000,
                p_requests_limit=1000,
            )
            await budget.take("m", 60_000)  # the whole bucket: the next charge waits
            waiting = asyncio.create_task(budget.take("m", 30_000))
            for _ in range(200):  # until the second reservation is taken
                [row] = await db.call("mealworker_budget_stats")
                if row["requests_charged"] == 2:
                    break
                await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            return await _take(db, 1000)

    after = asyncio.run(main())
    assert after["reserved"] is True
    assert after["wait_ms"] < 5_000  # not behind the 30-second reservation given back
