"""``mealworker enqueue``: queue meal-plan requests (or health-check pings) from a shell."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID

import typer

from mealplan_cli.cli import request_options as ro
from mealplan_cli.cli.app import app, load_settings, run_async, run_checked, stdout
from mealplan_cli.config import Settings
from mealplan_cli.db.connect import open_database
from mealplan_cli.generation.models import MealPlanRequest
from mealplan_cli.queue import MEAL_PLAN_JOB, PING_JOB, Queue


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
        typer.Option("--type", help=f"{MEAL_PLAN_JOB} (default) or {PING_JOB} (health check)."),
    ] = MEAL_PLAN_JOB,
    idempotency_key: Annotated[
        str | None, typer.Option(help="A retried request with the same key makes no new plan.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ids as JSON.")] = False,
) -> None:
    """Queue a meal-plan request (the same options as generate), or ping jobs with --type ping."""
    settings = load_settings(ctx)
    options = ro.RequestOptions.from_params(ctx.params)
    if job_type not in (MEAL_PLAN_JOB, PING_JOB):
        raise typer.BadParameter(f"unknown job type {job_type!r}", param_hint="--type")
    request = None if job_type == PING_JOB else run_checked(ctx, options.build)
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


async def _enqueue(
    settings: Settings,
    request: MealPlanRequest | None,
    user: UUID | None,
    priority: int,
    count: int,
    idempotency_key: str | None,
) -> list[dict[str, object]]:
    async with open_database(settings) as db:
        queue = Queue(db)
        if request is None:
            ids = await queue.enqueue_jobs(PING_JOB, [{}] * count, priority=priority)
            return [{"job_id": job_id} for job_id in ids]
        queued = []
        for index in range(count):
            key = (
                idempotency_key
                if count == 1 or idempotency_key is None
                else (f"{idempotency_key}-{index}")
            )
            item = await queue.enqueue_meal_plan(
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
