"""``mealworker generate``: one plan, locally, with no database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mealplan_cli.cli import request_options as ro
from mealplan_cli.cli.app import (
    PLANNER_HELP,
    Planner,
    app,
    fail,
    load_settings,
    run_async,
    stderr,
    stdout,
)
from mealplan_cli.ops.errors import ProviderUnavailableError

if TYPE_CHECKING:
    from mealplan_cli.mealplans.generation import MealPlan
    from mealplan_cli.mealplans.generation.request import MealPlanRequest
    from mealplan_cli.settings.config import Settings


@app.command()
def generate(
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
    planner: Annotated[
        Planner | None,
        typer.Option(envvar="PLANNER", help=PLANNER_HELP),
    ] = None,
    model: Annotated[str | None, typer.Option(envvar="OPENAI_MODEL", help="OpenAI model.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for the catalogue planner's choices.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Also write the plan as JSON to this file.", dir_okay=False)
    ] = None,
) -> None:
    """Generate a meal plan here and now, with no database: print it, or save it as JSON."""
    settings = load_settings(ctx, planner=planner, openai_model=model)
    if out is not None and not out.parent.is_dir():
        fail(f"--out {out}: no folder {out.parent}; create it or write the plan elsewhere")
    request = ro.RequestOptions.from_params(ctx.params)
    plan = run_async(ctx, _generate(settings, request, seed, show_progress=not as_json))
    if out is not None:
        try:
            out.write_text(plan.model_dump_json(indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            fail(f"--out {out}: cannot write the plan there ({error.strerror or error})")
    if as_json:
        stdout.print_json(plan.model_dump_json())
    else:
        from mealplan_cli.cli.render import plan_view

        stdout.print(plan_view(plan, fill=stdout.is_terminal))
        if out is not None:
            stdout.print(f"plan written to {out}")


async def _generate(
    settings: Settings, options: ro.RequestOptions, seed: int | None, show_progress: bool
) -> MealPlan:
    request: MealPlanRequest = options.build()
    try:
        return await _plan(settings, request, seed, show_progress)
    except ProviderUnavailableError as error:
        # The library's message fits a queued job too (the worker retries it); here the
        # person at the terminal is the one to try again.
        raise ProviderUnavailableError(f"{error}: try again in a minute") from None


async def _plan(
    settings: Settings, request: MealPlanRequest, seed: int | None, show_progress: bool
) -> MealPlan:
    from mealplan_cli.cli.render import progress_display
    from mealplan_cli.mealplans.generation import generate_meal_plan, generation_services

    async with generation_services(settings, seed=seed) as services:
        stderr.print(f"[dim]{services.description}[/]", highlight=False)
        if not show_progress:
            return await generate_meal_plan(
                request, planner=services.planner, images=services.images
            )
        with progress_display(stderr) as on_progress:
            return await generate_meal_plan(
                request, planner=services.planner, images=services.images, on_progress=on_progress
            )
