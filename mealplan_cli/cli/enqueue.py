"""``mealworker enqueue``: queue meal-plan requests, or jobs of any type, from a shell."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from mealplan_cli.cli import request_options as ro
from mealplan_cli.cli.app import app, load_settings, run_async, run_checked, stdout

if TYPE_CHECKING:
    from mealplan_cli.mealplans.generation.request import MealPlanRequest
    from mealplan_cli.settings.config import Settings

MEAL_PLAN_JOB = "generate_meal_plan"
_JOB_TYPE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


@app.command()
def enqueue(
    ctx: typer.Context,
    request_file: ro.RequestFile = None,
    days: ro.Days = None,
    meals: ro.Meals = None,
    calories: ro.Calories = None,
    macros: ro.Macros = None,
    diet: ro.DietOption = None,
    allergies: ro.Allergies = None,
    exclude: ro.Exclude = None,
    cuisines: ro.Cuisines = None,
    household: ro.Household = None,
    max_cook_minutes: ro.MaxCook = None,
    notes: ro.Notes = None,
    user: Annotated[UUID | None, typer.Option(help="The owner's auth.users id.")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    count: Annotated[int, typer.Option(min=1, max=100_000, help="How many (load tests).")] = 1,
    job_type: Annotated[
        str,
        typer.Option(
            "--type",
            help=f"{MEAL_PLAN_JOB} (default), ping (health check), or your own job type.",
        ),
    ] = MEAL_PLAN_JOB,
    payload: Annotated[
        str | None,
        typer.Option(help="The job's payload as a JSON object (job types other than meal plans)."),
    ] = None,
    delay: Annotated[
        float | None, typer.Option(min=0, help="Seconds before the job may run.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="A retried request with the same key makes no new plan.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ids as JSON.")] = False,
) -> None:
    """Queue a meal-plan request (the same options as generate), or jobs of another type
    (--type ping, or your own with --payload)."""
    settings = load_settings(ctx)
    if not _JOB_TYPE.match(job_type):
        raise typer.BadParameter(
            "a job type is 1-100 letters, digits or _.:- characters", param_hint="--type"
        )
    if job_type != MEAL_PLAN_JOB:
        body = _payload(payload)
        queued = run_async(
            ctx, _enqueue_jobs(settings, job_type, body, priority, count, idempotency_key, delay)
        )
    else:
        if payload is not None or delay is not None:
            raise typer.BadParameter(
                "a meal plan is described by the request options, and runs at once",
                param_hint="--payload/--delay",
            )
        options = ro.RequestOptions.from_params(ctx.params)
        request = run_checked(ctx, options.build)
        queued = run_async(ctx, _enqueue(settings, request, user, priority, count, idempotency_key))
    if as_json:
        stdout.out(json.dumps(queued))
        return
    for item in queued[:20]:
        plan = f", meal plan {item['meal_plan_id']}" if item.get("meal_plan_id") else ""
        again = "" if item.get("created", True) else " (already queued with this key: no new plan)"
        stdout.print(f"job {item['job_id']}{plan}{again}", highlight=False, soft_wrap=True)
    if len(queued) > 20:
        stdout.print(f"... and {len(queued) - 20} more")


def _payload(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"not valid JSON: {error.msg}", param_hint="--payload") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("write a JSON object, like '{\"id\": 1}'", param_hint="--payload")
    return value


async def _enqueue_jobs(
    settings: Settings,
    job_type: str,
    payload: dict[str, Any],
    priority: int,
    count: int,
    idempotency_key: str | None,
    delay: float | None,
) -> list[dict[str, object]]:
    from mealplan_cli.core.db.connect import open_database
    from mealplan_cli.core.queue import Queue

    async with open_database(settings) as db:
        queue = Queue(db)
        if idempotency_key is None:
            ids = await queue.enqueue_jobs(
                job_type, [payload] * count, priority=priority, delay=delay
            )
            return [{"job_id": job_id} for job_id in ids]
        queued: list[dict[str, object]] = []
        for index in range(count):
            key = idempotency_key if count == 1 else f"{idempotency_key}-{index}"
            item = await queue.enqueue(
                job_type, payload, priority=priority, delay=delay, idempotency_key=key
            )
            queued.append({"job_id": item.job_id, "created": item.created})
        return queued


async def _enqueue(
    settings: Settings,
    request: MealPlanRequest,
    user: UUID | None,
    priority: int,
    count: int,
    idempotency_key: str | None,
) -> list[dict[str, object]]:
    from mealplan_cli.core.db.connect import open_database
    from mealplan_cli.mealplans.plans import MealPlans

    async with open_database(settings) as db:
        plans = MealPlans(db)
        queued = []
        for index in range(count):
            key = (
                idempotency_key
                if count == 1 or idempotency_key is None
                else (f"{idempotency_key}-{index}")
            )
            item = await plans.enqueue(
                request, user_id=user, priority=priority, idempotency_key=key
            )
            queued.append(
                {
                    "job_id": item.job_id,
                    "meal_plan_id": str(item.meal_plan_id),
                    "created": item.created,
                }
            )
        return queued
