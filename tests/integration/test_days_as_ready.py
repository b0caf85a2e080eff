"""The first day visible early: each validated day lands in ``meal_plans.days`` while the plan is
generated, readable by its owner under RLS; the finished plan replaces the days atomically."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.queue import Queue
from mealplan_cli.core.worker import Worker, WorkerConfig
from mealplan_cli.mealplans.generation import generate_meal_plan
from mealplan_cli.mealplans.generation.models import Day
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.services import generation_services
from mealplan_cli.mealplans.plans import MealPlans
from mealplan_cli.runtime import builtin_handlers
from tests.conftest import openai_settings
from tests.fakes.meal_responder import CatalogResponder
from tests.fakes.openai_server import ChatRequest, FakeOpenAI
from tests.helpers.end_users import as_role, request_plan
from tests.helpers.transports import Opener, run

REQUEST = {"days": 3, "meals": ["breakfast", "lunch", "dinner"], "calories": 2000}


class DayOneFirst:
    """Answers day 1 at once and holds every other day until ``release`` is set."""

    def __init__(self) -> None:
        self.inner = CatalogResponder()
        self.release = threading.Event()

    def __call__(self, request: ChatRequest) -> dict[str, Any]:
        prompt = str(request.messages[-1]["content"])
        if request.schema_name == "DayPlan" and "write day 1 of" not in prompt:
            self.release.wait(60)
        return self.inner(request)


@pytest.fixture
def gated_openai() -> Iterator[tuple[FakeOpenAI, DayOneFirst]]:
    responder = DayOneFirst()
    with FakeOpenAI(responder, api_key="sk-test-4f9c2b7e1d") as fake:
        try:
            yield fake, responder
        finally:
            responder.release.set()


def owner_view(url: str, user: uuid.UUID, plan_id: Any) -> dict[str, Any]:
    with as_role(url, "authenticated", user) as conn:
        row = conn.execute(
            "select status, days, plan from public.meal_plans where id = %s", (plan_id,)
        ).fetchone()
    assert row is not None, "the owner cannot see the plan"
    return dict(row)


def wait_for(check: Any, what: str, seconds: float = 60.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def run_worker_in_thread(url: str, fake: FakeOpenAI) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    async def work() -> None:
        db = await PostgresDatabase(url).open()
        try:
            async with generation_services(openai_settings(fake)) as services:
                config = WorkerConfig(until_empty=True, poll_interval=0.05)
                worker = Worker(Queue(db), builtin_handlers(), config, resources=services)
                outcome.append(await asyncio.wait_for(worker.run(), 120))
        finally:
            await db.close()

    thread = threading.Thread(target=lambda: asyncio.run(work()), daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.timeout(120)
def test_the_owner_sees_day_one_before_the_plan_completes_then_the_whole_plan(
    database_url: str, gated_openai: tuple[FakeOpenAI, DayOneFirst]
) -> None:
    fake, responder = gated_openai
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    plan_id = request_plan(database_url, owner, REQUEST)
    thread, outcome = run_worker_in_thread(database_url, fake)

    early = wait_for(
        lambda: (view := owner_view(database_url, owner, plan_id))["days"] and view,
        "day 1 in the owner's row",
    )
    assert early["status"] == "generating"
    assert early["plan"] is None
    assert list(early["days"]) == ["1"]  # the other days are still being written
    day_one = Day.model_validate(early["days"]["1"])
    assert day_one.day == 1
    assert [m.slot.value for m in day_one.meals] == REQUEST["meals"]
    with as_role(database_url, "authenticated", stranger) as conn:
        assert conn.execute("select days from public.meal_plans").fetchall() == []

    responder.release.set()
    thread.join(120)
    assert outcome[0].completed == 1
    final = owner_view(database_url, owner, plan_id)
    assert final["status"] == "completed"
    assert final["days"] is None  # replaced by the plan, in the completing statement
    plan_days = final["plan"]["days"]
    assert [d["day"] for d in plan_days] == [1, 2, 3]
    assert [m["title"] for m in plan_days[0]["meals"]] == [m.title for m in day_one.meals]


# The SQL function, on its own.


def claimed_meal_plan(url: str) -> tuple[int, str, str]:
    """A meal-plan job claimed by a worker: (job id, lease token, meal plan id)."""
    with psycopg.connect(url, autocommit=True) as conn:
        enqueued = conn.execute(
            "select * from public.mealworker_enqueue_meal_plan(%s::jsonb)", (json.dumps(REQUEST),)
        ).fetchone()
        claimed = conn.execute(
            "select id, lease_token from public.mealworker_claim_jobs("
            "'w1', array['generate_meal_plan'], 1)"
        ).fetchone()
    assert enqueued is not None
    assert claimed is not None
    return int(claimed[0]), str(claimed[1]), str(enqueued[0])


def report(url: str, job_id: int, token: str, days: Any) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select public.mealworker_report_days(%s, %s::uuid, %s::jsonb)",
            (job_id, token, json.dumps(days)),
        ).fetchone()
    assert row is not None
    return bool(row[0])


def plan_row(url: str, plan_id: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(
            "select status, days, plan from public.meal_plans where id = %s", (plan_id,)
        ).fetchone()
    assert row is not None
    return dict(row)


def test_days_are_merged_at_their_number_and_fenced_by_the_lease(database_url: str) -> None:
    job_id, token, plan_id = claimed_meal_plan(database_url)
    assert report(database_url, job_id, token, {"2": {"v": "two"}})
    assert report(database_url, job_id, token, {"1": {"v": "one"}})
    assert report(database_url, job_id, token, {"2": {"v": "two, rewritten"}})
    row = plan_row(database_url, plan_id)
    assert row["status"] == "generating"
    assert row["days"] == {"1": {"v": "one"}, "2": {"v": "two, rewritten"}}

    assert not report(database_url, job_id, str(uuid.uuid4()), {"3": {"v": "stale worker"}})
    assert "3" not in plan_row(database_url, plan_id)["days"]
    with psycopg.connect(database_url) as conn:
        lost = conn.execute(
            "select detail ->> 'call' from public.background_job_events "
            "where job_id = %s and event = 'lease_lost'",
            (job_id,),
        ).fetchall()
    assert lost == [("report_days",)]


@pytest.mark.slow
@pytest.mark.parametrize("days", [[{"day": 1}], {"one": {}}, {"0": {}}, "1"])
def test_days_must_be_keyed_by_day_number(database_url: str, days: Any) -> None:
    job_id, token, _ = claimed_meal_plan(database_url)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="keyed by day number"):
        report(database_url, job_id, token, days)


def test_days_survive_a_retry_and_are_cleared_when_the_plan_ends(database_url: str) -> None:
    job_id, token, plan_id = claimed_meal_plan(database_url)
    assert report(database_url, job_id, token, {"1": {"v": "one"}})
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "select public.mealworker_fail_job(%s, %s::uuid, 'rate limited', true)",
            (job_id, token),
        )
    row = plan_row(database_url, plan_id)
    assert row["status"] == "pending"  # the retry resumes from the days already saved
    assert row["days"] == {"1": {"v": "one"}}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("update public.background_jobs set run_at = now() where id = %s", (job_id,))
        claimed = conn.execute(
            "select lease_token from public.mealworker_claim_job(%s, 'w2')", (job_id,)
        ).fetchone()
        assert claimed is not None
        saved = conn.execute(
            "select public.mealworker_saved_days(%s, %s)", (job_id, claimed[0])
        ).fetchone()
        stale = conn.execute(
            "select public.mealworker_saved_days(%s, %s)", (job_id, token)
        ).fetchone()
        conn.execute(
            "select public.mealworker_fail_job(%s, %s::uuid, 'bad request', false)",
            (job_id, claimed[0]),
        )
    assert saved == ({"1": {"v": "one"}},)
    assert stale == (None,)  # a worker that lost the job reads nothing
    row = plan_row(database_url, plan_id)
    assert row["status"] == "failed"
    assert row["days"] is None


def test_the_end_user_cannot_report_days(database_url: str) -> None:
    job_id, token, _ = claimed_meal_plan(database_url)
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        as_role(database_url, "authenticated", uuid.uuid4()) as conn,
    ):
        conn.execute(
            "select public.mealworker_report_days(%s, %s::uuid, '{}'::jsonb)", (job_id, token)
        )


# The library's hook.


def test_generate_meal_plan_tells_each_day_before_it_returns(fake_openai: FakeOpenAI) -> None:
    request = parse_request(REQUEST)
    told: list[Day] = []

    async def generate() -> Any:
        async with generation_services(openai_settings(fake_openai)) as services:
            return await generate_meal_plan(
                request, planner=services.planner, on_day=lambda day: told.append(day)
            )

    plan = asyncio.run(generate())
    assert sorted(day.day for day in told) == [1, 2, 3]
    by_number = {day.day: day for day in told}
    for day in plan.days:
        assert by_number[day.day].model_dump() == day.model_dump()


def test_report_days_over_every_transport(open_db: Opener, database_url: str) -> None:
    async def body(queue: Queue) -> None:
        plans = MealPlans(queue.db)
        queued = await plans.enqueue(parse_request({"days": 2}), idempotency_key=None)
        (job,) = await queue.claim("w1", ["generate_meal_plan"], 1, 30)
        assert await plans.report_days(job, {"2": {"day": 2}})
        assert await plans.report_days(job, {"1": {"day": 1}})
        assert plan_row(database_url, str(queued.meal_plan_id))["days"] == {
            "1": {"day": 1},
            "2": {"day": 2},
        }

    run(open_db, body)


class HeldOutline:
    """Answers day 1's meal calls at once and holds every other call (the outline, the later
    days) until ``release`` is set; ``held_answered`` counts held calls answered so far."""

    def __init__(self) -> None:
        self.inner = CatalogResponder()
        self.release = threading.Event()
        self.held_answered = 0

    def __call__(self, request: ChatRequest) -> dict[str, Any]:
        prompt = str(request.messages[-1]["content"])
        if "write day 1 of 3, only its" in prompt:
            return self.inner(request)
        self.release.wait(60)
        self.held_answered += 1
        return self.inner(request)


@pytest.mark.timeout(120)
def test_day_one_is_told_while_the_outline_and_the_other_days_are_held() -> None:
    responder = HeldOutline()
    told: list[Day] = []
    day_one = threading.Event()
    finished: list[Any] = []

    def on_day(day: Day) -> None:
        told.append(day)
        if day.day == 1:
            day_one.set()

    with FakeOpenAI(responder, api_key="sk-test-4f9c2b7e1d") as fake:

        async def generate() -> Any:
            settings = openai_settings(fake, openai_timeout_seconds=90)
            async with generation_services(settings) as services:
                return await generate_meal_plan(
                    parse_request(REQUEST), planner=services.planner, on_day=on_day
                )

        thread = threading.Thread(target=lambda: finished.append(asyncio.run(generate())))
        thread.start()
        try:
            assert day_one.wait(60), "day 1 waited for the outline"
            assert responder.held_answered == 0  # nothing else has been answered yet
            assert [day.day for day in told] == [1]
            assert fake.calls_by_schema()["PlanOutline"] == 1  # asked, still held
        finally:
            responder.release.set()
        thread.join(90)

        plan = finished[0]
        day_one_titles = [meal.title for meal in told[0].meals]
        assert [meal.title for meal in plan.days[0].meals] == day_one_titles
        later = [
            str(r.messages[-1]["content"])
            for r in fake.requests_for("DayPlan")
            if "only its" not in str(r.messages[-1]["content"])
        ]
        assert len(later) == 2  # days 2 and 3, each told what day 1 serves
        for prompt in later:
            assert all(title in prompt for title in day_one_titles)
            assert "Day 1 is already written with the main proteins" in prompt
