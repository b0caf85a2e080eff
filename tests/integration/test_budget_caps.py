"""The operator's daily OpenAI caps (tokens, US dollars): jobs wait for the next UTC day, or the
catalogue writes the plan; never a failure. Real PostgreSQL (directly and through PostgREST),
the loopback OpenAI, the worker in-process, the CLI through Typer's runner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.core.db.connect import open_database
from mealplan_cli.core.queue import Queue
from mealplan_cli.mealplans.budget import (
    CALL_SECONDS,
    WAIT_REASONS,
    CallOwner,
    DatabaseBudget,
    budget_key,
    calls_of,
)
from mealplan_cli.mealplans.generation.budget import Spend
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.plans import Enqueued, MealPlans
from mealplan_cli.ops.errors import (
    ConfigurationError,
    SpendCapReachedError,
    SpendCapTooSmallError,
)
from mealplan_cli.ops.metrics import WorkerMetrics
from mealplan_cli.ops.redact import SecretStr
from mealplan_cli.runtime import open_runtime
from mealplan_cli.settings.config import Settings
from tests.conftest import OPENAI_TEST_KEY, openai_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.postgrest_server import FakePostgrest
from tests.helpers.transports import Opener

MODEL = "gpt-4o-mini"
runner = CliRunner()


@contextmanager
def over(transport: str, database_url: str) -> Iterator[dict[str, Any]]:
    """The settings that reach the database over ``transport``."""
    if transport == "postgres":
        yield {"database_url": SecretStr(database_url)}
        return
    with FakePostgrest(database_url) as server:
        yield {
            "supabase_url": server.base_url,
            "supabase_service_role_key": SecretStr(server.service_role_key),
        }


def spend_most_of_today(
    database_url: str, fake: FakeOpenAI, *, tokens: int = 0, usd: float = 0
) -> None:
    """Other workers of the fleet spent this much today on the test key (no call is sent)."""
    key = budget_key(OPENAI_TEST_KEY, fake.base_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("select public.mealworker_budget_learn(%s, %s, 2000000, 5000)", (key, MODEL))
        if tokens:
            conn.execute(
                "select * from public.mealworker_budget_take(%s, %s, %s)", (key, MODEL, tokens)
            )
        if usd:
            conn.execute(
                "select public.mealworker_budget_spent(%s, %s, null, %s)", (key, MODEL, usd)
            )


def run_plans(settings: Settings, days: int = 2) -> tuple[Enqueued, str]:
    """Enqueue one plan and run a worker until nothing is runnable: the plan, and the worker's
    /metrics text."""

    async def main() -> tuple[Enqueued, str]:
        async with open_runtime(settings) as rt:
            enqueued = await MealPlans(rt.db).enqueue(MealPlanRequest(days=days))
            worker = rt.worker(until_empty=True)
            await asyncio.wait_for(worker.run(), 60)
            return enqueued, worker.metrics.render()

    return asyncio.run(main())


def fetch(url: str, query: str, *params: object) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def next_utc_midnight(url: str, moment: datetime) -> datetime:
    row = fetch(
        url,
        "select ((%s::timestamptz at time zone 'utc')::date + 1)::timestamp at time zone 'utc'"
        " as midnight",
        moment,
    )
    midnight: datetime = row["midnight"]
    return midnight


def events(url: str, job_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "select event, detail from public.background_job_events where job_id = %s order by id",
            (job_id,),
        ).fetchall()


USD_KEY = "key-usd"


def expire_leases(database_url: str) -> None:
    """Every worker holding a job died: their leases run out (as after SIGKILL, OOM, a reboot)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update public.background_jobs set lease_expires_at = now() - interval '1 second'"
            " where status = 'processing'"
        )


def reservations(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "select job_id, lease_token, usd::float8 as usd, expires_at - created_at as expires_in"
            " from public.openai_reservations order by created_at"
        ).fetchall()


def would_go(database_url: str, usd: float = 0.006, key: str = USD_KEY) -> tuple[bool, Any]:
    """Whether a call of ``usd`` at worst would go now under a $0.01 cap, and the reason it
    would not: the take, rolled back, so that the budget is left as it was."""
    with (
        psycopg.connect(database_url, row_factory=dict_row) as conn,
        conn.transaction(force_rollback=True),
    ):
        row = conn.execute(
            "select reserved, reason from public.mealworker_budget_take(%s, %s, 1000,"
            " p_tokens_cap => 10000000, p_usd => %s, p_daily_usd_cap => 0.01,"
            " p_expires_ms => 600000)",
            (key, MODEL, usd),
        ).fetchone()
    assert row is not None
    return row["reserved"], row["reason"]


def usd_under_way(database_url: str, key: str = USD_KEY) -> float:
    row = fetch(
        database_url,
        "select key_usd_reserved from public.mealworker_budget_stats() where budget_key = %s",
        key,
    )
    return float(row["key_usd_reserved"])


@pytest.mark.parametrize("transport", ["postgres", "rest"])
def test_the_token_cap_makes_the_job_wait_for_the_next_utc_day(
    fake_openai: FakeOpenAI, database_url: str, transport: str
) -> None:
    spend_most_of_today(database_url, fake_openai, tokens=99_000)
    with over(transport, database_url) as reach:
        settings = openai_settings(fake_openai, **reach, openai_daily_token_cap=100_000)
        enqueued, metrics = run_plans(settings)
    assert fake_openai.requests == []  # nothing was sent past the cap
    job = fetch(
        database_url,
        "select status, attempts, run_at, updated_at, last_error, wait_reason"
        " from public.background_jobs where id = %s",
        enqueued.job_id,
    )
    assert job["status"] == "pending"
    assert job["attempts"] == 0  # the claim's attempt was given back
    assert job["last_error"] is None  # nothing failed
    assert job["run_at"] == next_utc_midnight(database_url, job["updated_at"])
    assert "daily OpenAI cap reached" in job["wait_reason"]
    assert "99,000 of 100,000 tokens" in job["wait_reason"]
    assert "OPENAI_DAILY_TOKEN_CAP" in job["wait_reason"]
    happened = [e["event"] for e in events(database_url, enqueued.job_id)]
    assert "deferred" in happened
    assert "retry_scheduled" not in happened
    plan = fetch(
        database_url,
        "select status, progress, error from public.meal_plans where id = %s",
        enqueued.meal_plan_id,
    )
    assert plan["status"] == "pending"
    assert plan["error"] is None
    assert plan["progress"]["stage"] == "waiting"
    assert plan["progress"]["waiting"] == "daily OpenAI cap reached"
    assert datetime.fromisoformat(plan["progress"]["until"]) == job["run_at"]
    assert "UTC" in plan["progress"]["message"]
    assert 'mealworker_jobs_deferred_total{job_type="generate_meal_plan"} 1' in metrics
    assert f'mealworker_openai_daily_cap_reached{{model="{MODEL}"}} 1' in metrics
    assert "mealworker_openai_daily_cap_tokens 100000" in metrics

    result = runner.invoke(app, ["stats", "--json"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    [waiting] = shown["waiting"]
    assert waiting["job_type"] == "generate_meal_plan"
    assert waiting["jobs"] == 1
    assert waiting["reason"] == job["wait_reason"]
    assert datetime.fromisoformat(waiting["until"]) == job["run_at"]
    [budget] = shown["budget"]
    assert budget["capped_by"] == "tokens"
    assert budget["daily_tokens_cap"] == 100_000


def test_a_waiting_plan_is_written_when_it_runs_again(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    """The operator raises the cap and runs the waiting job now (``requeue``): the plan no
    longer says it waits, and is written on the job's first counted attempt."""
    spend_most_of_today(database_url, fake_openai, tokens=99_000)
    settings = openai_settings(
        fake_openai, database_url=SecretStr(database_url), openai_daily_token_cap=100_000
    )
    enqueued, _ = run_plans(settings, days=1)
    env = {"DATABASE_URL": database_url}
    result = runner.invoke(app, ["requeue", str(enqueued.job_id)], env=env)
    assert result.exit_code == 0, result.output
    job = fetch(
        database_url,
        "select status, wait_reason from public.background_jobs where id = %s",
        enqueued.job_id,
    )
    assert job == {"status": "pending", "wait_reason": None}
    raised = settings.model_copy(update={"openai_daily_token_cap": 10_000_000})
    run_plans(raised, days=1)
    job = fetch(
        database_url,
        "select status, attempts, wait_reason from public.background_jobs where id = %s",
        enqueued.job_id,
    )
    assert job == {"status": "completed", "attempts": 1, "wait_reason": None}
    plan = fetch(
        database_url,
        "select status, progress from public.meal_plans where id = %s",
        enqueued.meal_plan_id,
    )
    assert plan["status"] == "completed"
    assert "waiting" not in plan["progress"]


UNTIL = datetime(2999, 1, 1, tzinfo=UTC)


async def a_plan_waiting_for_the_cap(queue: Queue, plans: MealPlans) -> Enqueued:
    """A meal plan whose job a worker deferred to ``UNTIL`` for the daily cap, saying so to
    the app, as ``mealplans/job.py`` does."""
    enqueued = await plans.enqueue(MealPlanRequest(days=1))
    (job,) = await queue.claim("w1", ["generate_meal_plan"], 1, 30)
    assert await plans.waiting(job, "daily OpenAI cap reached", UNTIL, "tomorrow")
    assert await queue.defer(job, UNTIL, "daily OpenAI cap reached") == "pending"
    return enqueued


def test_requeue_waiting_tells_the_app_its_plan_no_longer_waits(database_url: str) -> None:
    """The operator raised the cap and ran ``requeue --waiting``: the meal plan is plain
    pending again (no "waiting until midnight" for the app to show), its job runnable now."""
    settings = Settings(database_url=SecretStr(database_url))

    async def main() -> Enqueued:
        async with open_database(settings) as db:
            return await a_plan_waiting_for_the_cap(Queue(db), MealPlans(db))

    enqueued = asyncio.run(main())
    result = runner.invoke(app, ["requeue", "--waiting"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "requeued 1 job" in result.output
    plan = fetch(
        database_url,
        "select status, progress from public.meal_plans where id = %s",
        enqueued.meal_plan_id,
    )
    assert plan == {"status": "pending", "progress": {}}
    job = fetch(
        database_url,
        "select status, wait_reason, run_at <= now() as runnable from public.background_jobs"
        " where id = %s",
        enqueued.job_id,
    )
    assert job == {"status": "pending", "wait_reason": None, "runnable": True}


def test_a_waiting_plan_stops_saying_so_when_its_job_is_claimed(database_url: str) -> None:
    """Midnight passed: the job is claimed again, and neither the job nor the meal plan says
    it waits any more (the app shows it generating)."""
    settings = Settings(database_url=SecretStr(database_url))

    async def main() -> tuple[Enqueued, dict[str, Any]]:
        async with open_database(settings) as db:
            queue, plans = Queue(db), MealPlans(db)
            enqueued = await a_plan_waiting_for_the_cap(queue, plans)
            waiting = await plans.get(enqueued.meal_plan_id)
            assert waiting is not None
            with psycopg.connect(database_url, autocommit=True) as conn:  # midnight passes
                conn.execute("update public.background_jobs set run_at = now()")
            assert len(await queue.claim("w1", ["generate_meal_plan"], 1, 30)) == 1
            return enqueued, {"status": waiting.status, "progress": waiting.progress}

    enqueued, waiting = asyncio.run(main())
    assert datetime.fromisoformat(waiting["progress"].pop("until")) == UNTIL
    assert waiting == {
        "status": "pending",
        "progress": {
            "stage": "waiting",
            "waiting": "daily OpenAI cap reached",
            "message": "tomorrow",
        },
    }
    plan = fetch(
        database_url,
        "select status, progress from public.meal_plans where id = %s",
        enqueued.meal_plan_id,
    )
    assert plan == {"status": "generating", "progress": {}}
    job = fetch(
        database_url,
        "select attempts, wait_reason from public.background_jobs where id = %s",
        enqueued.job_id,
    )
    assert job == {"attempts": 1, "wait_reason": None}


@pytest.mark.parametrize("cap", ["tokens", "usd"])
def test_with_the_fallback_the_catalogue_writes_the_plan(
    fake_openai: FakeOpenAI, database_url: str, cap: str
) -> None:
    if cap == "tokens":
        spend_most_of_today(database_url, fake_openai, tokens=99_000)
        limit: dict[str, Any] = {"openai_daily_token_cap": 100_000}
    else:
        spend_most_of_today(database_url, fake_openai, usd=0.4999)
        limit = {"openai_daily_usd_cap": 0.5}
    settings = openai_settings(
        fake_openai,
        database_url=SecretStr(database_url),
        openai_daily_cap_fallback=True,
        **limit,
    )
    enqueued, _ = run_plans(settings)
    assert fake_openai.requests == []
    plan = fetch(
        database_url,
        "select status, plan from public.meal_plans where id = %s",
        enqueued.meal_plan_id,
    )
    assert plan["status"] == "completed"
    notes = plan["plan"]["metadata"]["validation"]["notes"]
    assert any("offline catalogue" in n and "daily OpenAI cap" in n for n in notes)


def test_the_usd_cap_makes_the_job_wait_and_says_why(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    spend_most_of_today(database_url, fake_openai, usd=0.4999)
    settings = openai_settings(
        fake_openai, database_url=SecretStr(database_url), openai_daily_usd_cap=0.5
    )
    enqueued, metrics = run_plans(settings)
    assert fake_openai.requests == []
    job = fetch(
        database_url,
        "select status, attempts, run_at, updated_at, wait_reason"
        " from public.background_jobs where id = %s",
        enqueued.job_id,
    )
    assert (job["status"], job["attempts"]) == ("pending", 0)
    assert job["run_at"] == next_utc_midnight(database_url, job["updated_at"])
    assert "$0.4999 of $0.50 spent today" in job["wait_reason"]
    assert "OPENAI_DAILY_USD_CAP" in job["wait_reason"]
    assert "mealworker_openai_cost_today_usd 0.4999" in metrics
    assert "mealworker_openai_daily_cap_usd 0.5" in metrics


def test_the_usd_cap_counts_calls_in_flight_at_their_worst_and_answers_at_their_cost(
    open_db: Opener, database_url: str
) -> None:
    """Two calls whose worst cases together exceed the cap: the second waits for the first,
    not for midnight, and nothing says the cap is reached; once the first answer's real cost is
    known (far below its worst case), there is room again. A call that does not fit what was
    really spent waits for the next UTC day."""

    async def main() -> tuple[Any, ...]:
        db = await open_db()
        try:
            budget = DatabaseBudget(db, USD_KEY, daily_usd_cap=0.01, tokens_cap=10_000_000)
            first = await budget.take(MODEL, 1000, 0.006)
            waits = would_go(database_url)
            capped = fetch(
                database_url,
                "select capped_until from public.openai_budgets where budget_key = %s",
                USD_KEY,
            )
            second = asyncio.create_task(budget.take(MODEL, 1000, 0.006))
            with pytest.raises(TimeoutError):  # no room until the first call settles
                await asyncio.wait_for(asyncio.shield(second), 0.5)
            await budget.spent(MODEL, 0.006, Spend(800, 200, 100, 0.001), first)
            reservation = await asyncio.wait_for(second, 30)  # $0.001 spent + $0.006: fits
            await budget.spent(MODEL, 0.006, Spend(800, 0, 100, 0.005), reservation)
            with pytest.raises(SpendCapReachedError) as third:  # $0.006 + $0.006 > $0.01
                await budget.take(MODEL, 1000, 0.006)
            with pytest.raises(SpendCapTooSmallError) as never:
                await budget.take(MODEL, 1000, 0.02)
            return waits, capped, third.value, never.value, budget.figures()
        finally:
            await db.close()

    waits, capped, third, never, figures = asyncio.run(main())
    assert waits == (False, "usd_in_flight")
    assert capped == {"capped_until": None}
    assert "$0.0060 of $0.01 spent today" in third.reason
    assert "OPENAI_DAILY_USD_CAP" in third.reason
    assert third.until == next_utc_midnight(database_url, datetime.now().astimezone())
    assert never.until is None
    assert not never.retryable
    assert "more than the whole daily OpenAI cap of $0.0100" in str(never)
    assert figures.cost_today_usd == pytest.approx(0.006)
    row = fetch(
        database_url,
        "select * from public.mealworker_budget_stats() where budget_key = %s",
        USD_KEY,
    )
    assert row["key_usd_spent"] == pytest.approx(0.006)
    assert row["key_usd_reserved"] == pytest.approx(0)
    assert (row["tokens_input"], row["tokens_cached"], row["tokens_output"]) == (1600, 200, 200)
    assert row["capped_by"] == "usd"


def test_the_spend_of_a_plan_is_what_its_answers_cost(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    settings = openai_settings(
        fake_openai, database_url=SecretStr(database_url), openai_daily_usd_cap=5.0
    )
    enqueued, _ = run_plans(settings, days=1)
    plan = fetch(
        database_url,
        "select status, usage from public.meal_plans where id = %s",
        enqueued.meal_plan_id,
    )
    assert plan["status"] == "completed"
    usage = plan["usage"]
    assert usage["cost_usd"] > 0
    budget = fetch(database_url, "select * from public.mealworker_budget_stats()")
    assert budget["key_usd_spent"] == pytest.approx(usage["cost_usd"])
    assert budget["key_usd_reserved"] == pytest.approx(0, abs=1e-9)  # every call settled
    assert reservations(database_url) == []  # each ended by its own spent
    assert budget["cost_usd"] == pytest.approx(usage["cost_usd"])
    assert budget["tokens_input"] == usage["input_tokens"]
    assert budget["tokens_output"] == usage["output_tokens"]
    assert budget["tokens_charged"] == usage["charged_tokens"]


def test_a_usd_cap_on_a_model_without_a_price_refuses_to_start(
    fake_openai: FakeOpenAI, database_url: str
) -> None:
    settings = openai_settings(
        fake_openai,
        database_url=SecretStr(database_url),
        openai_model="gpt-imaginary",
        openai_daily_usd_cap=1.0,
    )

    async def start(settings: Settings) -> str:
        async with open_runtime(settings) as rt:
            return rt.description

    with pytest.raises(ConfigurationError) as refused:
        asyncio.run(start(settings))
    message = str(refused.value)
    assert "OPENAI_DAILY_USD_CAP" in message
    assert "'gpt-imaginary'" in message
    assert "OPENAI_PRICE_INPUT_PER_MTOK" in message
    priced = settings.model_copy(
        update={"openai_price_input_per_mtok": 1.0, "openai_price_output_per_mtok": 4.0}
    )
    assert "gpt-imaginary" in asyncio.run(start(priced))  # with its price given, it starts
    env = {
        "DATABASE_URL": database_url,
        "OPENAI_API_KEY": OPENAI_TEST_KEY,
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_MODEL": "gpt-imaginary",
        "OPENAI_DAILY_USD_CAP": "1",
    }
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    [check] = [c for c in json.loads(result.stdout) if c["name"] == "openai budget"]
    assert check["verdict"] == "fail"
    assert "OPENAI_DAILY_USD_CAP" in check["detail"]


def test_a_cap_without_the_shared_budget_refuses_to_start(database_url: str) -> None:
    settings = Settings(
        database_url=SecretStr(database_url),
        openai_api_key=SecretStr("sk-x"),
        openai_shared_budget=False,
        openai_daily_token_cap=1000,
    )

    async def main() -> None:
        async with open_database(settings) as db:
            DatabaseBudget.from_settings(db, settings)

    with pytest.raises(ConfigurationError, match="OPENAI_DAILY_TOKEN_CAP need the shared"):
        asyncio.run(main())


def test_stats_and_doctor_show_the_budget(fake_openai: FakeOpenAI, database_url: str) -> None:
    key = budget_key(OPENAI_TEST_KEY, fake_openai.base_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("select public.mealworker_budget_learn(%s, %s, 2000000, 5000)", (key, MODEL))
        conn.execute(
            "select * from public.mealworker_budget_take(%s, %s, 9000, p_usd => 0.004,"
            " p_daily_usd_cap => 0.5)",
            (key, MODEL),
        )
        conn.execute(
            "select public.mealworker_budget_spent(%s, %s, 0.004, 0.0025, 7000, 3000, 600)",
            (key, MODEL),
        )
    env = {
        "DATABASE_URL": database_url,
        "OPENAI_API_KEY": OPENAI_TEST_KEY,
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_MODEL": MODEL,
        "OPENAI_DAILY_USD_CAP": "0.5",
        "COLUMNS": "200",
    }
    result = runner.invoke(app, ["stats"], env=env)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"OpenAI budget {key} / {MODEL}" in out
    assert "2,000,000 tokens, learned" in out
    assert "9,000 tokens" in out
    assert "7,000 / 3,000 / 600" in out
    assert "$0.0025 of a $0.50 daily cap" in out
    assert "open" in out
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    [check] = [c for c in json.loads(result.stdout) if c["name"] == "openai budget"]
    assert check["verdict"] == "ok"
    assert "2,000,000 tokens/min learned" in check["detail"]
    assert "$0.0025 spent today of a $0.50 cap" in check["detail"]
    assert "9,000 tokens charged today" in check["detail"]

    with psycopg.connect(database_url, autocommit=True) as conn:  # the cap is reached
        conn.execute(
            "select * from public.mealworker_budget_take(%s, %s, 9000, p_usd => 0.6,"
            " p_daily_usd_cap => 0.5)",
            (key, MODEL),
        )
    result = runner.invoke(app, ["stats"], env=env)
    assert "daily USD cap reached: jobs wait until" in result.stdout
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    [check] = [c for c in json.loads(result.stdout) if c["name"] == "openai budget"]
    assert check["verdict"] == "warn"
    assert "the daily cap (OPENAI_DAILY_USD_CAP) is reached: OpenAI jobs wait" in check["detail"]


def test_a_long_budget_wait_is_in_the_job_history_and_the_metrics(database_url: str) -> None:
    """A call that waits over a second for the fleet's budget notes it in its job's history
    (``tail`` shows it) and counts in /metrics; nothing is spent of the job's attempts."""
    settings = Settings(database_url=SecretStr(database_url))

    async def main() -> tuple[int, str]:
        async with open_database(settings) as db:
            queue = Queue(db)
            (job_id,) = await queue.enqueue_jobs("generate_meal_plan", [{}])
            (job,) = await queue.claim("w1", ["generate_meal_plan"], 1, 30)
            await db.call(
                "mealworker_budget_learn",
                p_key="k",
                p_model='m"x',
                p_tokens_limit=60_000,
                p_requests_limit=1000,
            )
            budget = DatabaseBudget(db, "k")
            metrics = WorkerMetrics()
            metrics.budget = budget.figures
            with calls_of(CallOwner.of(job)):
                await budget.take('m"x', 60_000)  # the whole bucket
                await budget.take('m"x', 1_200)  # 1.2 s of refill away
            return job_id, metrics.render()

    job_id, metrics = asyncio.run(main())
    [wait] = [e for e in events(database_url, job_id) if e["event"] == "budget_wait"]
    assert wait["detail"]["waited_ms"] >= 1000
    assert wait["detail"]["model"] == 'm"x'
    why = wait["detail"]["why"].split(", ")  # in words, not the database's codes
    assert "turns with other calls" in why
    assert set(why) <= set(WAIT_REASONS.values())
    assert 'mealworker_openai_budget_wait_seconds_total{model="m\\"x"} 1.' in metrics
    assert 'mealworker_openai_budget_tokens_per_minute{model="m\\"x"} 60000' in metrics
    result = runner.invoke(
        app,
        ["tail", "--no-follow", "--event", "budget_wait"],
        env={"DATABASE_URL": database_url, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.stderr
    assert "budget_wait" in result.stdout
    assert 'for the OpenAI budget (m"x): ' in " ".join(result.stdout.split())
    assert "turns with other calls" in " ".join(result.stdout.split())


@pytest.mark.parametrize("end", ["lease expired", "requeued and claimed again"])
def test_a_dead_workers_worst_case_ends_with_its_lease_and_its_calls_time(
    open_db: Opener, database_url: str, end: str
) -> None:
    """A worker reserved a call's worst case for its job, then died before ``spent``: once its
    lease has run out (or the job went to another worker) and its call's time is up, the next
    call under the cap goes. Before, the dead call's worst case held every call back until
    midnight. While the call's time is not up, a lost lease is not enough: a worker cut off
    from the database may still be answered, and the cap must not be overshot by that call."""

    async def main() -> tuple[tuple[bool, Any], list[dict[str, Any]], float]:
        db = await open_db()
        try:
            queue = Queue(db)
            await queue.enqueue_jobs("generate_meal_plan", [{}])
            (job,) = await queue.claim("w1", ["generate_meal_plan"], 1, 30)
            dying = DatabaseBudget(db, USD_KEY, daily_usd_cap=0.01, tokens_cap=10_000_000)
            with calls_of(CallOwner.of(job)):
                assert await dying.take(MODEL, 1000, 0.006) is not None  # and never spent
            other = DatabaseBudget(db, USD_KEY, daily_usd_cap=0.01, tokens_cap=10_000_000)
            held = would_go(database_url)  # while its lease is held
            dead = reservations(database_url)
            expire_leases(database_url)
            if end == "requeued and claimed again":
                assert await queue.requeue_stale() == [(job.id, "pending")]
                (again,) = await queue.claim("w2", ["generate_meal_plan"], 1, 30)
                assert again.lease_token != job.lease_token
            assert would_go(database_url) == held  # its call may still be answered
            with psycopg.connect(database_url, autocommit=True) as conn:  # its time is up
                conn.execute(
                    "update public.openai_reservations"
                    " set expires_at = now() - interval '1 millisecond'"
                )
            under_way = usd_under_way(database_url)  # ended, not deleted yet
            await other.take(MODEL, 1000, 0.006)  # $0.006 of $0.01: fits again
            return held, dead, under_way
        finally:
            await db.close()

    held, dead, under_way = asyncio.run(main())
    assert held == (False, "usd_in_flight")  # it waits for that call, not for midnight
    [reservation] = dead
    assert reservation["job_id"] is not None
    assert reservation["lease_token"] is not None
    assert reservation["expires_in"].total_seconds() == pytest.approx(CALL_SECONDS, abs=0.01)
    assert under_way == 0
    [left] = reservations(database_url)  # the dead one was deleted by the take
    assert left["job_id"] is None
    assert usd_under_way(database_url) == pytest.approx(0.006)


def test_a_held_lease_keeps_its_worst_case_counted(open_db: Opener, database_url: str) -> None:
    """Two workers' calls at once, for two claimed jobs, under a cap that fits one: one goes,
    the other waits for it to settle; heartbeats keep the first call's worst case counted."""

    async def main() -> tuple[list[Any], tuple[bool, Any]]:
        one, two = await open_db(), await open_db()
        try:
            queue = Queue(one)
            await queue.enqueue_jobs("generate_meal_plan", [{}, {}])
            jobs = await queue.claim("w1", ["generate_meal_plan"], 2, 30)
            budgets = [
                DatabaseBudget(db, USD_KEY, daily_usd_cap=0.01, tokens_cap=10_000_000)
                for db in (one, two)
            ]

            async def call(budget: DatabaseBudget, job: Any) -> Any:
                with calls_of(CallOwner.of(job)):
                    return await budget.take(MODEL, 1000, 0.006)

            calls = [asyncio.create_task(call(b, j)) for b, j in zip(budgets, jobs, strict=True)]
            done, waiting = await asyncio.wait(calls, timeout=30, return_when="FIRST_COMPLETED")
            assert await queue.heartbeat("w1", jobs, 30) == []
            held = would_go(database_url)
            for task in waiting:  # its worker stops: the wait ends without a reservation
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            return [task.result() for task in done], held
        finally:
            await one.close()
            await two.close()

    served, held = asyncio.run(main())
    assert [type(r).__name__ for r in served] == ["UUID"]
    assert held == (False, "usd_in_flight")
    assert usd_under_way(database_url) == pytest.approx(0.006)
    assert len(reservations(database_url)) == 1


def test_a_call_of_no_job_holds_its_worst_case_until_its_expiry(
    open_db: Opener, database_url: str
) -> None:
    """``mealworker generate`` and other callers outside the queue: the worst case ends after
    the request's time (OPENAI_TIMEOUT_SECONDS, plus a margin; each attempt reserves anew)."""
    settings = Settings(
        openai_api_key=SecretStr("sk-no-job"),
        openai_timeout_seconds=10,
        openai_max_attempts=2,
        openai_daily_usd_cap=0.01,
        openai_tpm_limit=10_000_000,
    )

    async def main() -> tuple[bool, Any]:
        db = await open_db()
        try:
            budget = DatabaseBudget.from_settings(db, settings)
            assert budget is not None
            await budget.take(MODEL, 1000, 0.006)  # and never spent
            held = would_go(database_url, key=budget.key)
            with psycopg.connect(database_url, autocommit=True) as conn:  # its time is up
                conn.execute(
                    "update public.openai_reservations"
                    " set expires_at = now() - interval '1 millisecond'"
                )
            await budget.take(MODEL, 1000, 0.006)
            return held
        finally:
            await db.close()

    assert asyncio.run(main()) == (False, "usd_in_flight")
    [left] = reservations(database_url)
    assert (left["job_id"], left["lease_token"]) == (None, None)
    assert left["expires_in"].total_seconds() == pytest.approx(10 + 30, abs=0.01)


def test_stats_shows_only_live_reservations_under_way(
    env: dict[str, str], database_url: str
) -> None:
    """A dead worker's worst case is not "under way" in ``stats --json``; a live call's is, and
    so is what was reserved the old way (without a lease or an expiry) today."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("insert into public.background_jobs (job_type, payload) values ('x', '{}')")
        [job] = conn.execute(
            "select * from public.mealworker_claim_jobs('w1', array['x'], 1, 30)"
        ).fetchall()
        for usd, job_id, lease, expires_ms in [
            (0.004, job["id"], job["lease_token"], None),  # its worker dies below
            (0.002, None, None, 600_000),
            (0.001, None, None, 0),  # its time already up
            (0.0005, None, None, None),  # neither: until spent, or midnight
        ]:
            taken = conn.execute(
                "select reserved from public.mealworker_budget_take(%s, %s, 10,"
                " p_tokens_cap => 1000000, p_usd => %s, p_job_id => %s, p_lease_token => %s,"
                " p_expires_ms => %s)",
                (USD_KEY, MODEL, usd, job_id, lease, expires_ms),
            ).fetchone()
            assert taken == {"reserved": True}
    expire_leases(database_url)
    result = runner.invoke(app, ["stats", "--json"], env=env)
    assert result.exit_code == 0, result.stderr
    [budget] = json.loads(result.stdout)["budget"]
    assert budget["key_usd_reserved"] == pytest.approx(0.002 + 0.0005)
    # The next take deleted the call whose time was up; stats only reads: the dead worker's
    # reservation stays until a take of the key deletes it.
    assert [r["usd"] for r in reservations(database_url)] == [0.004, 0.002]
