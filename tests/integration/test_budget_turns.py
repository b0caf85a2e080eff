"""Fair turns on a short OpenAI budget (``20240121000000_fair_budget_turns.sql``): calls that
wait are served round-robin across users, oldest job first, whichever worker asks; a dead
waiter never blocks the line; with budget to spare nothing waits. Real PostgreSQL (directly
and through PostgREST), several ``DatabaseBudget`` objects standing for several workers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from mealplan_cli.core.db.base import Database, Row
from mealplan_cli.core.db.connect import open_database
from mealplan_cli.core.queue import parse_time
from mealplan_cli.mealplans.budget import CallOwner, DatabaseBudget, budget_key, calls_of
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.plans import Enqueued, MealPlans
from mealplan_cli.ops.redact import SecretStr
from mealplan_cli.runtime import open_runtime
from mealplan_cli.settings.config import Settings
from tests.conftest import OPENAI_TEST_KEY, openai_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.cli import cli

KEY = "key-turns"
MODEL = "m"
LIMIT = 60_000
"""Tokens a minute: a thousand a second, so a charge of 500 is half a second of refill."""
CHARGE = 500


class CountingDatabase:
    """A real database, and the name of every function called through it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.transport = db.transport
        self.supports_listen = db.supports_listen
        self.called: list[str] = []

    async def call(self, function: str, **params: Any) -> list[Row]:
        self.called.append(function)
        return await self.db.call(function, **params)

    async def value(self, function: str, **params: Any) -> Any:
        self.called.append(function)
        return await self.db.value(function, **params)

    async def listen(self, channel: str, on_notify: Callable[[str], None]) -> None:
        await self.db.listen(channel, on_notify)

    async def close(self) -> None:
        await self.db.close()


def quick(db: Database, **overrides: Any) -> DatabaseBudget:
    """A worker's budget whose waiters ask again every 0.2 s: the line's order shows in the
    order calls are served (a charge is half a second of refill)."""
    values: dict[str, Any] = {"lead": 0.0, "refresh": 0.2, "stale_after": 5.0, **overrides}
    return DatabaseBudget(db, KEY, **values)


async def learn(db: Database, limit: int = LIMIT) -> None:
    await db.call(
        "mealworker_budget_learn",
        p_key=KEY,
        p_model=MODEL,
        p_tokens_limit=limit,
        p_requests_limit=10_000,
    )


async def wait_in_line(db: Database, **params: Any) -> None:
    """One ask of a call larger than the bucket: it joins the line and stays there."""
    await db.call(
        "mealworker_budget_take_turn",
        p_key=KEY,
        p_model=MODEL,
        p_tokens=10 * LIMIT,
        p_waiter=uuid.uuid4(),
        **params,
    )


async def line(db: Database, key: str = KEY, model: str = MODEL) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.call("mealworker_budget_waiters", p_key=key, p_model=model)]


async def _line_of(
    db: Database, count: int, what: str, key: str = KEY, model: str = MODEL
) -> list[dict[str, Any]]:
    """The line, once ``count`` calls wait in it (tests wait for the rows, not for a time)."""
    for _ in range(400):
        found = await line(db, key, model)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.025)
    raise AssertionError(f"never in line: {what}")


async def enqueue(db: Database, user: uuid.UUID | None) -> Enqueued:
    return await MealPlans(db).enqueue(MealPlanRequest(days=1), user_id=user)


async def job_created_at(db: Database, job_id: int) -> datetime:
    [row] = await db.call("mealworker_get_job", p_job_id=job_id)
    created = parse_time(row["created_at"])
    assert created is not None
    return created


@asynccontextmanager
async def head_of_line(db: Database) -> AsyncIterator[None]:
    """A call older than any job and larger than any bucket at the head of the line (another
    worker's, still asking): nobody is served until it leaves."""
    blocker = uuid.uuid4()

    async def ask() -> None:
        await db.call(
            "mealworker_budget_take_turn",
            p_key=KEY,
            p_model=MODEL,
            p_tokens=10**12,  # years of refill: its wait is still given as the refresh
            p_waiter=blocker,
            p_group="blocker",
            p_job_created_at=datetime(2000, 1, 1, tzinfo=UTC),
        )

    await ask()
    try:
        yield
    finally:
        await ask()  # still alive, whatever the time the others took to line up
        # A 429 empties the bucket: from here on each call waits half a second of refill.
        await db.call("mealworker_budget_refused", p_key=KEY, p_model=MODEL, p_wait_ms=0)
        await db.call("mealworker_budget_leave", p_key=KEY, p_model=MODEL, p_waiter=blocker)


@pytest.mark.parametrize(
    "db_settings", ["postgres", pytest.param("rest", marks=pytest.mark.slow)], indirect=True
)
def test_a_short_budget_serves_users_in_turn_oldest_first(db_settings: Settings) -> None:
    """User A's three plans wait (on one worker), then user B's newer one (on another): B's
    call is served after A's oldest and before A's two others, and A's in order of age
    although they asked youngest first. Before turns, calls went in the order they asked."""
    user_a, user_b = uuid.uuid4(), uuid.uuid4()
    served: list[str] = []

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with (
            open_database(db_settings) as one,
            open_database(db_settings) as two,
        ):
            jobs = {
                name: await enqueue(one, user)
                for name, user in [("A1", user_a), ("A2", user_a), ("A3", user_a), ("B1", user_b)]
            }
            await learn(one)
            workers = {"A": quick(one), "B": quick(two)}

            async def call(name: str) -> None:
                job_id = jobs[name].job_id
                with calls_of(CallOwner(job_id, await job_created_at(one, job_id))):
                    await workers[name[0]].take(MODEL, CHARGE)
                served.append(name)

            async with head_of_line(one):
                tasks = []
                for name in ["A3", "A2", "A1", "B1"]:  # youngest of A first, B last
                    tasks.append(asyncio.create_task(call(name)))
                    await _line_of(one, len(tasks) + 1, f"{name} in line")
                waiting = await line(one)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            return waiting, await line(one)

    waiting, after = asyncio.run(main())
    order = [row["turn_group"] for row in waiting]
    assert order[0] == "blocker"
    assert order[1:] == [f"user:{user_a}", f"user:{user_b}", f"user:{user_a}", f"user:{user_a}"]
    assert [row["turn"] for row in waiting] == [0, 0, 0, 1, 2]
    assert served == ["A1", "B1", "A2", "A3"]
    assert after == []  # every call served left the line


def test_a_dead_waiter_is_skipped(database_url: str) -> None:
    """A worker died while its call, older than ours and larger than the bucket, waited: once
    it has not asked for ``stale_after``, our call goes and the dead call is out of the line."""

    async def main() -> tuple[DatabaseBudget, list[dict[str, Any]]]:
        async with open_database(Settings(database_url=SecretStr(database_url))) as db:
            await learn(db)
            await wait_in_line(
                db, p_job_created_at=datetime(2000, 1, 1, tzinfo=UTC)
            )  # and never again
            budget = quick(db, stale_after=0.5, refresh=0.1)
            await asyncio.wait_for(budget.take(MODEL, CHARGE), 30)
            return budget, await line(db)

    budget, after = asyncio.run(main())
    assert budget.waited_seconds > 0  # it did wait behind the dead call, for a while
    assert after == []
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        left = conn.execute("select count(*) as n from public.openai_budget_waiters").fetchone()
    assert left == {"n": 0}  # removed, not just ignored


def test_with_budget_to_spare_a_call_is_one_round_trip_and_writes_no_line(
    db_settings: Settings,
) -> None:
    """The fast path: a full bucket, nobody waiting. Each call is one statement, waits for
    nothing, and leaves no trace in the line; two workers alike."""

    async def main() -> tuple[list[str], list[str], float, list[dict[str, Any]]]:
        async with open_database(db_settings) as one, open_database(db_settings) as two:
            await learn(one)
            first, second = CountingDatabase(one), CountingDatabase(two)
            budgets = [DatabaseBudget(first, KEY), DatabaseBudget(second, KEY)]
            job = await enqueue(one, uuid.uuid4())
            with calls_of(CallOwner(job.job_id, await job_created_at(one, job.job_id))):
                for _ in range(3):
                    await asyncio.gather(*(b.take(MODEL, CHARGE) for b in budgets))
            waited = sum(b.waited_seconds for b in budgets)
            return first.called, second.called, waited, await line(one)

    first, second, waited, waiting = asyncio.run(main())
    assert first == ["mealworker_budget_take_turn"] * 3
    assert second == ["mealworker_budget_take_turn"] * 3
    assert waited == 0
    assert waiting == []


def test_a_cancelled_wait_leaves_the_line(database_url: str) -> None:
    """An operator's cancel or shutdown while a call waits its turn: its place is given up at
    once (not after it goes stale), so the calls behind it move up."""

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with open_database(Settings(database_url=SecretStr(database_url))) as db:
            await learn(db)
            budget = quick(db, stale_after=600.0)
            async with head_of_line(db):
                waiting = asyncio.create_task(budget.take(MODEL, CHARGE))
                before = await _line_of(db, 2, "the call")
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                after = await line(db)
            return before, after

    before, after = asyncio.run(main())
    assert [row["turn_group"] for row in before] == ["blocker", before[1]["turn_group"]]
    assert [row["turn_group"] for row in after] == ["blocker"]


def test_a_job_waits_in_line_as_its_users_and_leaves_it_on_shutdown(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    """Through the worker: the generation library's calls carry the job (its id and age) and
    the meal plan's user as their group, though the library knows nothing of either; stopping
    the worker takes them out of the line and gives the job back."""
    user = uuid.uuid4()
    settings = openai_settings(
        fake_openai,
        database_url=SecretStr(database_url),
        openai_tpm_limit=LIMIT,  # a thousand tokens a second: each call waits seconds
    )
    key = budget_key(OPENAI_TEST_KEY, fake_openai.base_url)
    model = settings.openai_model

    async def main() -> tuple[Enqueued, datetime, list[dict[str, Any]], list[Row]]:
        async with open_runtime(settings) as rt:
            enqueued = await enqueue(rt.db, user)
            created = await job_created_at(rt.db, enqueued.job_id)
            await rt.db.call(  # the bucket is spent: the plan's calls wait in line
                "mealworker_budget_take",
                p_key=key,
                p_model=model,
                p_tokens=LIMIT,
                p_tokens_cap=LIMIT,
            )
            worker = rt.worker(shutdown_grace=0.1)
            running = asyncio.create_task(worker.run())

            waiting = await _line_of(rt.db, 1, "the plan's calls", key, model)
            worker.stop()
            await asyncio.wait_for(running, 30)
            return enqueued, created, waiting, await line(rt.db, key, model)

    enqueued, created, waiting, after = asyncio.run(main())
    assert {row["job_id"] for row in waiting} == {enqueued.job_id}
    assert {row["turn_group"] for row in waiting} == {f"user:{user}"}
    assert {parse_time(row["job_created_at"]) for row in waiting} == {created}
    assert after == []
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        job = conn.execute(
            "select status, attempts from public.background_jobs where id = %s",
            (enqueued.job_id,),
        ).fetchone()
        left = conn.execute("select count(*) as n from public.openai_budget_waiters").fetchone()
    assert job == {"status": "pending", "attempts": 0}  # released, no attempt spent
    assert left == {"n": 0}
    assert fake_openai.requests == []  # nothing was sent past the spent budget


def test_a_call_of_no_job_is_its_own_group(database_url: str) -> None:
    """``mealworker generate`` and other callers outside the queue still take turns: each call
    alone, as old as its first ask."""

    async def main() -> list[dict[str, Any]]:
        async with open_database(Settings(database_url=SecretStr(database_url))) as db:
            await learn(db)
            budget = quick(db)
            async with head_of_line(db):
                task = asyncio.create_task(budget.take(MODEL, CHARGE))
                waiting = await _line_of(db, 2, "the call")
            await asyncio.wait_for(task, 30)
            return waiting

    waiting = asyncio.run(main())
    assert waiting[1]["job_id"] is None
    assert waiting[1]["turn_group"].startswith("call:")


def test_stats_shows_the_calls_waiting_their_turn(env: dict[str, str], database_url: str) -> None:
    """An operator asking why plans are slow sees the line: how many calls wait their turn for
    each budget, and the longest wait so far; a budget with no line says nothing of one."""

    async def main() -> None:
        async with open_database(Settings(database_url=SecretStr(database_url))) as db:
            await learn(db)
            for user in ("ann", "bob", "ann"):  # larger than the bucket: they stay in line
                await wait_in_line(db, p_group=user, p_stale_ms=3_600_000)
            await db.call(
                "mealworker_budget_learn",
                p_key="key-idle",
                p_model=MODEL,
                p_tokens_limit=LIMIT,
                p_requests_limit=10_000,
            )

    asyncio.run(main())
    code, out, err = cli(env, "stats", "--json")
    assert code == 0, err
    budgets = {row["budget_key"]: row for row in json.loads(out)["budget"]}
    assert budgets[KEY]["calls_waiting"] == 3
    assert budgets[KEY]["longest_wait_ms"] >= 0
    assert (budgets["key-idle"]["calls_waiting"], budgets["key-idle"]["longest_wait_ms"]) == (0, 0)
    code, out, err = cli(env, "stats")
    assert code == 0, err
    assert "calls waiting their turn" in out
    assert out.count("calls waiting their turn") == 1  # the idle budget shows no line
