"""``mealworker demo``: the whole system on this machine, with nothing to configure."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mealplan_cli.cli.app import app, load_settings, run_async, stderr, stdout
from mealplan_cli.cli.wording import plural
from mealplan_cli.core.signals import STOP

if TYPE_CHECKING:
    from rich.table import Table

    from mealplan_cli.mealplans.generation.models import MealPlan
    from mealplan_cli.mealplans.plans import Enqueued, MealPlanRow, MealPlans
    from mealplan_cli.settings.config import Settings

SAMPLES: list[dict[str, Any]] = [
    {"days": 3, "diet": ["vegan"], "allergies": ["tree_nuts", "sesame"], "calories": 2200},
    {"days": 3, "diet": ["keto"], "meals": ["breakfast", "lunch", "dinner", "snack"]},
    {"days": 2, "diet": ["mediterranean"], "household_size": 4, "cuisines": ["italian", "greek"]},
    {"days": 3, "diet": ["pescatarian", "gluten_free"], "max_cook_minutes": 30},
    {
        "days": 2,
        "allergies": ["peanuts", "milk"],
        "macros": {"protein": 30, "carbs": 40, "fat": 30},
    },
    {"days": 7, "calories": 2600, "exclude": ["mushrooms", "olives"]},
]


def _summary(request: dict[str, Any]) -> str:
    diet = "+".join(request.get("diet", ["omnivore"]))
    parts = [plural(request["days"], "day"), diet]
    if request.get("allergies"):
        parts.append("no " + ", ".join(request["allergies"]))
    if request.get("household_size"):
        parts.append(f"family of {request['household_size']}")
    return ", ".join(parts)


def _view(rows: list[tuple[Enqueued, str, MealPlanRow | None]], started: float) -> Table:
    from rich.table import Table

    table = Table(title=f"mealworker demo: {time.monotonic() - started:.1f}s", title_justify="left")
    table.add_column("job", justify="right")
    table.add_column("request")
    table.add_column("status")
    table.add_column("progress")
    for queued, summary, plan in rows:
        status = plan.status if plan else "pending"
        style = {"completed": "green", "failed": "red", "generating": "yellow"}.get(status, "")
        progress = ""
        if plan and plan.progress and status == "generating":
            p = plan.progress
            progress = f"{p.get('stage', '')} {p.get('done', '')}/{p.get('total', '')}"
        elif plan and plan.error:
            progress = plan.error[:60]
        table.add_row(str(queued.job_id), summary, f"[{style}]{status}[/]", progress)
    return table


@app.command()
def demo(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(min=1, max=16, help="Jobs at once.")] = 3,
) -> None:
    """Queue a few sample requests and watch a worker generate them (embedded database by
    default: nothing to set up)."""
    STOP.install()
    from mealplan_cli.cli.render import plan_view
    from mealplan_cli.ops.logs import setup_logging
    from mealplan_cli.settings.config import LogLevel

    settings = load_settings(ctx)
    setup_logging(settings.model_copy(update={"log_level": LogLevel.WARNING}), to_files=False)
    plan = run_async(ctx, _demo(settings, concurrency))
    if plan is not None:
        stdout.print(plan_view(plan, fill=stdout.is_terminal))


async def _demo(settings: Settings, concurrency: int) -> MealPlan | None:
    from rich.live import Live

    from mealplan_cli.core.worker import default_worker_id
    from mealplan_cli.mealplans.generation.models import MealPlan
    from mealplan_cli.mealplans.generation.request import parse_request
    from mealplan_cli.mealplans.plans import MealPlans
    from mealplan_cli.runtime import open_runtime

    stderr.print("[dim]starting the database and applying migrations...[/]")
    async with open_runtime(settings) as rt:
        stderr.print(f"[dim]transport {rt.db.transport}; {rt.description}[/]")
        plans = MealPlans(rt.db)
        queued = [await plans.enqueue(parse_request(s)) for s in SAMPLES]
        worker = rt.worker(
            worker_id=default_worker_id("demo"),
            concurrency=concurrency,
            poll_interval=0.2,
            until_empty=True,
        )
        started = time.monotonic()
        with STOP.stopping(worker.stop):
            run = asyncio.create_task(worker.run())
            with Live(console=stderr, refresh_per_second=8) as live:
                while True:
                    rows = await _rows(plans, queued)
                    live.update(_view(rows, started))
                    if run.done():
                        break
                    await asyncio.sleep(0.15)
            report = await run
        stderr.print(
            f"\n{plural(report.completed, 'plan')} completed, {report.failed} failed, in "
            f"{time.monotonic() - started:.1f}s; the last one:"
        )
        for item in reversed(queued):
            row = await plans.get(item.meal_plan_id)
            if row is not None and row.plan:
                return MealPlan.model_validate(row.plan)
        return None


async def _rows(
    plans: MealPlans, queued: list[Enqueued]
) -> list[tuple[Enqueued, str, MealPlanRow | None]]:
    rows = []
    for item, sample in zip(queued, SAMPLES, strict=True):
        rows.append((item, _summary(sample), await plans.get(item.meal_plan_id)))
    return rows
