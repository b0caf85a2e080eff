"""A write the database refuses fails that job alone; a refusal of every write holds the worker.

The refusals come from what apps really add: a trigger on ``meal_plans`` that raises for one
plan (``raise exception ... using errcode = '42501'``), or one that refuses every change of a
plan for a while. Over both transports: psycopg, and supabase-py against the PostgREST fake.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import SecretStr

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.db.rest import RestDatabase
from mealplan_cli.core.queue import Queue
from mealplan_cli.core.worker import Worker, WorkerConfig
from mealplan_cli.core.worker.refusals import SYSTEMIC_STREAK
from mealplan_cli.mealplans.generation.services import generation_services
from mealplan_cli.runtime import builtin_handlers
from mealplan_cli.settings.config import Settings
from tests.fakes.postgrest_server import FakePostgrest
from tests.helpers.batches import finishing_together
from tests.helpers.processes import WorkerProcess, env_for, statuses, wait_until

pytestmark = pytest.mark.timeout(120)

REQUEST = {"days": 1, "meals": ["lunch", "dinner"], "calories": 2000}
HOLD = "plan % is on hold for review by the app"


def execute(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cursor = conn.execute(sql.encode(), params or None)
        return cursor.fetchall() if cursor.description else []


def enqueue_plans(url: str, count: int) -> list[str]:
    """``count`` plans requested; their meal plan ids, in job order."""
    for _ in range(count):
        execute(
            url,
            "select public.mealworker_enqueue_meal_plan(p_request => %s::jsonb)",
            json.dumps(REQUEST),
        )
    rows = execute(url, "select meal_plan_id from public.background_jobs order by id")
    return [str(row["meal_plan_id"]) for row in rows]


def refuse_completing(url: str, plan_id: str) -> None:
    """The app's guard: this one plan may not be completed (a row trigger, SQLSTATE 42501)."""
    execute(
        url,
        "create function public.app_hold_plan() returns trigger language plpgsql as $$"
        " begin"
        "   if new.status = 'completed' and new.id = '" + plan_id + "'::uuid then"
        f"     raise exception '{HOLD}', new.id using errcode = '42501';"
        "   end if;"
        "   return new;"
        " end $$;"
        " create trigger app_hold_plan before update on public.meal_plans"
        " for each row execute function public.app_hold_plan()",
    )


def freeze_plans(url: str) -> None:
    """Every write of a plan refused (a statement trigger: the rows do not matter)."""
    execute(
        url,
        "create function public.app_freeze() returns trigger language plpgsql as $$"
        " begin raise exception 'meal plans are read-only during maintenance'"
        "   using errcode = 'P0001'; end $$;"
        " create trigger app_freeze before update of plan on public.meal_plans"
        " for each statement execute function public.app_freeze()",
    )


def jobs(url: str) -> list[dict[str, Any]]:
    return execute(
        url,
        "select j.id, j.status, j.last_error, j.attempts, p.id::text as plan_id,"
        " p.status as plan_status, p.error as plan_error"
        " from public.background_jobs j join public.meal_plans p on p.id = j.meal_plan_id"
        " order by j.id",
    )


@pytest.fixture(params=["postgres", "rest"])
def transport(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    """The base URL of a PostgREST fake for ``rest``; nothing for ``postgres``."""
    if request.param == "postgres":
        yield ""
        return
    with FakePostgrest(database_url) as server:
        yield f"{server.base_url}|{server.service_role_key}"


@asynccontextmanager
async def queue_over(database_url: str, transport: str) -> AsyncIterator[Queue]:
    db: PostgresDatabase | RestDatabase
    if transport:
        base_url, key = transport.split("|")
        db = await RestDatabase(base_url, SecretStr(key)).open()
    else:
        db = await PostgresDatabase(database_url).open()
    try:
        yield Queue(db)
    finally:
        await db.close()


def config(**values: Any) -> WorkerConfig:
    return WorkerConfig(**{"concurrency": 4, "poll_interval": 0.05, "lease_seconds": 5, **values})


def test_a_refused_plan_fails_alone_and_the_rest_of_its_batch_is_saved(
    database_url: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    plans = enqueue_plans(database_url, 4)
    refused = plans[2]
    refuse_completing(database_url, refused)

    async def main() -> Any:
        async with queue_over(database_url, transport) as queue:
            worker = Worker(queue, finishing_together(4), config(until_empty=True))
            return await asyncio.wait_for(worker.run(), 60)

    with caplog.at_level(logging.INFO, logger="mealworker"):
        report = asyncio.run(main())
    assert "a completion of 4 jobs was refused" in caplog.text  # the four were one batch
    assert (report.completed, report.failed, report.lost) == (3, 1, 0)
    rows = jobs(database_url)
    assert [r["status"] for r in rows] == ["completed", "completed", "failed", "completed"]
    bad = rows[2]
    assert bad["plan_id"] == refused
    assert bad["plan_status"] == "failed"
    for text in (bad["last_error"], bad["plan_error"]):
        assert f"plan {refused} is on hold for review by the app" in text
        assert "SQLSTATE 42501" in text
    assert bad["attempts"] == 1  # a trigger's refusal is not retried: it would say the same
    for blame in ("service_role", "SUPABASE_SERVICE_ROLE_KEY", "DATABASE_URL", "credential"):
        assert blame not in caplog.text


def test_a_temporary_refusal_is_retried_after_its_attempts(
    database_url: str, transport: str
) -> None:
    enqueue_plans(database_url, 1)
    execute(
        database_url,
        "create function public.app_busy() returns trigger language plpgsql as $$"
        " begin if new.status = 'completed' then"
        "   raise exception 'could not serialize access' using errcode = '40001';"
        " end if; return new; end $$;"
        " create trigger app_busy before update on public.meal_plans"
        " for each row execute function public.app_busy()",
    )

    async def main() -> Any:
        async with queue_over(database_url, transport) as queue:
            worker = Worker(queue, finishing_together(1), config(until_empty=True))
            return await asyncio.wait_for(worker.run(), 60)

    report = asyncio.run(main())
    assert (report.completed, report.retried) == (0, 1)
    (row,) = jobs(database_url)
    assert row["status"] == "pending"  # a retry is scheduled, as for any temporary failure
    assert "SQLSTATE 40001" in row["last_error"]


def test_when_every_completion_is_refused_the_worker_waits_and_resumes(
    database_url: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    enqueue_plans(database_url, 2)
    freeze_plans(database_url)

    async def main() -> Any:
        async with queue_over(database_url, transport) as queue:
            worker = Worker(queue, finishing_together(2), config())
            running = asyncio.create_task(worker.run())
            while "the database refuses to complete jobs" not in caplog.text:
                assert not running.done(), caplog.text
                await asyncio.sleep(0.05)
            healthy, why = worker.health.healthy()
            assert not healthy
            assert "read-only during maintenance" in why
            assert {r["status"] for r in jobs(database_url)} == {"processing"}  # kept, not failed
            execute(database_url, "drop trigger app_freeze on public.meal_plans")
            while "accepts writes again" not in caplog.text:
                assert not running.done(), caplog.text
                await asyncio.sleep(0.05)
            worker.stop()
            return await asyncio.wait_for(running, 30)

    with caplog.at_level(logging.INFO, logger="mealworker"):
        report = asyncio.run(main())
    assert (report.completed, report.failed) == (2, 0)
    assert {r["plan_status"] for r in jobs(database_url)} == {"completed"}
    assert "SQLSTATE P0001" in caplog.text


@pytest.mark.parametrize("over", ["postgres", "rest"])
def test_a_running_worker_keeps_serving_after_the_app_refuses_a_plan(
    database_url: str,
    over: str,
    workers: Callable[..., WorkerProcess],
) -> None:
    """``mealworker work`` itself: the refused plan fails, the others are saved, and the worker
    goes on with the next plans until SIGTERM (before: CRITICAL, exit 1, 0 of 3 saved)."""
    plans = enqueue_plans(database_url, 4)
    refuse_completing(database_url, plans[1])
    env = env_for(database_url, PLANNER="catalog", MAX_CONCURRENT_JOBS="4")
    with ExitStack() as stack:
        if over == "rest":
            server = stack.enter_context(FakePostgrest(database_url))
            del env["DATABASE_URL"]
            env["SUPABASE_URL"] = server.base_url
            env["SUPABASE_SERVICE_ROLE_KEY"] = server.service_role_key
        worker = workers(env)
        wait_until(lambda: statuses(database_url) == {"completed": 3, "failed": 1}, 60, "3 saved")
        enqueue_plans(database_url, 1)
        wait_until(lambda: statuses(database_url).get("completed") == 4, 60, "the next plan")
        assert worker.process.poll() is None, worker.output
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output
    output = worker.output
    assert f"transport {over}" in output
    (bad,) = [row for row in jobs(database_url) if row["status"] == "failed"]
    assert bad["plan_id"] == plans[1]
    assert f"plan {plans[1]} is on hold for review by the app" in bad["plan_error"]
    assert "SQLSTATE 42501" in bad["last_error"]
    blames = ("service_role", "SUPABASE_SERVICE_ROLE_KEY", "DATABASE_URL")
    for wrong in ("side task", "Traceback", "client has been closed", *blames):
        assert wrong not in output, output


def test_a_refused_failure_and_refused_progress_do_not_stop_the_worker(
    database_url: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The app refuses the progress of every plan and the failure of one: the plans are made
    all the same, and the job whose failure cannot be written is left to its lease's expiry."""
    plans = enqueue_plans(database_url, 2)
    execute(
        database_url,
        "create function public.app_quiet() returns trigger language plpgsql as $$"
        " begin"
        "   if new.status = 'generating' and new.progress is distinct from old.progress then"
        "     raise exception 'progress is not shown for this app' using errcode = '42501';"
        "   end if;"
        "   if new.status = 'failed' then"
        "     raise exception 'plans never fail here' using errcode = 'P0001';"
        "   end if;"
        "   return new;"
        " end $$;"
        " create trigger app_quiet before update on public.meal_plans"
        " for each row execute function public.app_quiet()",
    )
    execute(  # the first plan's request breaks its bounds: the job fails at once
        database_url,
        "update public.background_jobs set payload = jsonb_set(payload, '{request,days}', '99')"
        " where meal_plan_id = %s::uuid",
        plans[0],
    )

    async def main() -> Any:
        async with queue_over(database_url, transport) as queue:
            settings = Settings(planner="catalog")
            async with generation_services(settings) as services:
                worker = Worker(
                    queue, builtin_handlers(), config(until_empty=True), resources=services
                )
                return await asyncio.wait_for(worker.run(), 60)

    with caplog.at_level(logging.DEBUG, logger="mealworker"):
        report = asyncio.run(main())
    assert (report.completed, report.lost) == (1, 1)
    rows = jobs(database_url)
    assert [r["plan_status"] for r in rows] == ["generating", "completed"]
    assert "the database refused to record its failure too" in caplog.text
    assert "plans never fail here (SQLSTATE P0001)" in caplog.text
    refusals = [r for r in caplog.records if "progress not written" in r.getMessage()]
    assert "progress is not shown for this app" in refusals[0].getMessage()
    assert refusals[0].levelno == logging.WARNING  # said once per job, then quietly
    assert {r.levelno for r in refusals[1:]} <= {logging.DEBUG}


def test_a_revoked_grant_holds_the_worker_until_it_is_given_back(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Over the Data API the worker is ``service_role``: taking its right to complete jobs
    away refuses every write of it; the worker says so, names the privilege, and resumes."""
    enqueue_plans(database_url, 2)
    grant = "function public.mealworker_complete_jobs(bigint[], uuid[], jsonb[])"
    execute(database_url, f"revoke execute on {grant} from service_role")

    async def main() -> Any:
        with FakePostgrest(database_url) as server:
            async with queue_over(
                database_url, f"{server.base_url}|{server.service_role_key}"
            ) as q:
                worker = Worker(q, finishing_together(2), config())
                running = asyncio.create_task(worker.run())
                while "the database refuses to" not in caplog.text:
                    assert not running.done(), caplog.text
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1)  # a while refused: nothing is failed meanwhile
                assert not running.done()
                assert "failed" not in {r["status"] for r in jobs(database_url)}
                execute(database_url, f"grant execute on {grant} to service_role")
                while statuses_of(database_url) != {"completed"}:
                    assert not running.done(), caplog.text
                    await asyncio.sleep(0.05)
                worker.stop()
                return await asyncio.wait_for(running, 30)

    with caplog.at_level(logging.INFO, logger="mealworker"):
        report = asyncio.run(main())
    assert report.completed == 2
    assert "permission denied for function mealworker_complete_jobs" in caplog.text
    assert "lacks a privilege" in caplog.text
    assert "accepts writes again" in caplog.text


def statuses_of(url: str) -> set[str]:
    return {row["status"] for row in jobs(url)}


def test_a_worker_refused_every_write_keeps_running_and_exits_0_on_sigterm(
    database_url: str,
    workers: Callable[..., WorkerProcess],
) -> None:
    enqueue_plans(database_url, 2)
    freeze_plans(database_url)
    worker = workers(env_for(database_url, PLANNER="catalog"))
    wait_until(lambda: "the database refuses to complete jobs" in worker.output, 60, "refused")
    wait_until(lambda: "still refuses" in worker.output, 60, "a reminder")  # not one line only
    assert worker.process.poll() is None, worker.output
    assert statuses(database_url) == {"processing": 2}  # the plans are not failed for it
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output
    assert "read-only during maintenance (SQLSTATE P0001)" in worker.output
    assert "Traceback" not in worker.output


def test_when_every_plan_is_refused_the_worker_stops_failing_them_and_waits(
    database_url: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A guard that refuses every plan looks, batch after batch, like one bad plan each time:
    after a few batches in a row refused whole, the worker takes it for its own problem and
    stops failing plans for it."""
    enqueue_plans(database_url, 6)
    execute(
        database_url,
        "create function public.app_hold_all() returns trigger language plpgsql as $$"
        " begin if new.status = 'completed' then"
        "   raise exception 'no plan is completed today' using errcode = '42501';"
        " end if; return new; end $$;"
        " create trigger app_hold_all before update on public.meal_plans"
        " for each row execute function public.app_hold_all()",
    )

    async def main() -> Any:
        async with queue_over(database_url, transport) as queue:
            worker = Worker(queue, finishing_together(1), config(concurrency=1))
            running = asyncio.create_task(worker.run())
            while "the database refuses to complete jobs" not in caplog.text:
                assert not running.done(), caplog.text
                await asyncio.sleep(0.05)
            failed = [r["id"] for r in jobs(database_url) if r["status"] == "failed"]
            execute(database_url, "drop trigger app_hold_all on public.meal_plans")
            while statuses_of(database_url) != {"completed", "failed"}:
                assert not running.done(), caplog.text
                await asyncio.sleep(0.05)
            worker.stop()
            await asyncio.wait_for(running, 30)
            return failed

    with caplog.at_level(logging.INFO, logger="mealworker"):
        failed = asyncio.run(main())
    assert len(failed) < SYSTEMIC_STREAK  # failed before the pattern was plain
    rows = jobs(database_url)
    assert [r["id"] for r in rows if r["status"] == "failed"] == failed
    assert sum(r["status"] == "completed" for r in rows) == 6 - len(failed)


def refuse_each(url: str, reasons: dict[str, str]) -> None:
    """The app's guard refuses these plans, each for a reason of its own (SQLSTATE 42501)."""
    cases = " ".join(
        f"when '{plan_id}'::uuid then raise exception '{reason}' using errcode = '42501';"
        for plan_id, reason in reasons.items()
    )
    execute(
        url,
        "create function public.app_refuse_each() returns trigger language plpgsql as $$"
        f" begin if new.status = 'completed' then case new.id {cases} else null; end case;"
        " end if; return new; end $$;"
        " create trigger app_refuse_each before update on public.meal_plans"
        " for each row execute function public.app_refuse_each()",
    )


async def until(condition: Callable[[], bool], running: asyncio.Task[Any], why: str) -> None:
    while not condition():
        assert not running.done(), why
        await asyncio.sleep(0.05)


def test_three_bad_plans_in_a_row_fail_after_a_hold_and_the_queue_goes_on(
    database_url: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Three plans refused in a row, nothing saved between, look like a refusal of every
    plan and hold the worker; but the check of no row passes, so the hold ends (after
    ``refused_rows_hold``): the plans fail, each with its own refusal, and the plans after
    them are made (before: held until SIGTERM, the queue stuck)."""
    plans = enqueue_plans(database_url, 6)
    reasons = {
        plans[0]: "plan is over the allergy budget",
        plans[1]: "plan repeats yesterday",
        plans[2]: "plan needs a dietitian",
    }
    refuse_each(database_url, reasons)

    async def main() -> Any:
        async with queue_over(database_url, transport) as queue:
            held = config(concurrency=3, refused_rows_hold=0.3)
            worker = Worker(queue, finishing_together(3), held)  # the three bad: one batch
            running = asyncio.create_task(worker.run())
            await until(lambda: statuses_of(database_url) == {"completed", "failed"}, running, "")
            await until(lambda: worker.health.healthy()[0], running, "healthy again")
            worker.stop()
            return await asyncio.wait_for(running, 30)

    with caplog.at_level(logging.INFO, logger="mealworker"):
        report = asyncio.run(main())
    assert "the database refuses to complete jobs" in caplog.text  # it held, a while
    assert "failing the held jobs after 0.3s" in caplog.text
    assert "claiming resumes" in caplog.text
    assert (report.completed, report.failed) == (3, 3)
    rows = jobs(database_url)
    assert [r["status"] for r in rows] == ["failed"] * 3 + ["completed"] * 3
    for row in rows[:3]:
        for text in (row["last_error"], row["plan_error"]):
            assert reasons[row["plan_id"]] in text  # its own reason, not its neighbour's
            assert "SQLSTATE 42501" in text
        assert row["attempts"] == 1


def test_a_guard_refusing_every_plan_fails_them_slowly_one_per_hold(
    database_url: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every plan refused, by rows (the check of no row passes): after each hold the worker
    fails what it held and probes with one job, which is held again. The queue is not burnt
    at full speed: a bounded number of plans fails per hold, and the worker says so."""
    enqueue_plans(database_url, 30)
    execute(
        database_url,
        "create function public.app_hold_all() returns trigger language plpgsql as $$"
        " begin if new.status = 'completed' then"
        "   raise exception 'no plan is completed today' using errcode = '42501';"
        " end if; return new; end $$;"
        " create trigger app_hold_all before update on public.meal_plans"
        " for each row execute function public.app_hold_all()",
    )
    concurrency, hold, windows = 2, 0.3, 5

    def released() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "claiming resumes" in r.getMessage()]

    async def main() -> Any:
        async with queue_over(database_url, transport) as queue:
            settings = config(concurrency=concurrency, refused_rows_hold=hold)
            worker = Worker(queue, finishing_together(1), settings)
            running = asyncio.create_task(worker.run())

            def done() -> bool:  # or the whole queue burnt (what must not happen)
                return len(released()) >= windows or "pending" not in statuses_of(database_url)

            await until(done, running, "holds that end")
            worker.stop()
            return await asyncio.wait_for(running, 30)

    with caplog.at_level(logging.INFO, logger="mealworker"):
        report = asyncio.run(main())
    failures = [r for r in caplog.records if "failed: the database refused" in r.getMessage()]
    first_hold = next(r for r in caplog.records if "refuses to complete jobs" in r.getMessage())
    assert len(released()) >= windows, caplog.text
    ends = [r.created for r in released()][:windows]
    per_window = [
        sum(start < r.created <= end for r in failures)
        for start, end in zip([0.0, *ends], ends, strict=False)
    ]
    assert sum(r.created < first_hold.created for r in failures) < SYSTEMIC_STREAK
    assert all(count <= 1 for count in per_window[2:]), per_window  # one probe per hold
    for earlier, later in itertools.pairwise(ends):
        assert later - earlier >= hold  # held between, not failing as fast as it claims
    assert report.failed == len(failures) <= 30 - 10, per_window  # the queue is not burnt
    assert "no plan is completed today (SQLSTATE 42501)" in released()[0].getMessage()
    statuses = {r["status"] for r in jobs(database_url)}
    assert "completed" not in statuses
    assert "pending" in statuses  # the rest of the queue waits
