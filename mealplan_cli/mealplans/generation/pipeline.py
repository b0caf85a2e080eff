"""``generate_meal_plan``: the one entry point every command and the worker call.

It knows nothing of queues, databases or the CLI. Its collaborators (the planner, the photo
source) are passed in, so tests hand it real clients pointed at local servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from mealplan_cli.mealplans.generation.feasibility import precheck
from mealplan_cli.mealplans.generation.foods import FoodTable, default_table
from mealplan_cli.mealplans.generation.images import UnsplashPhotos
from mealplan_cli.mealplans.generation.models import (
    Day,
    MealPlan,
    Nutrition,
    Photo,
    PlanMetadata,
    ValidationReport,
)
from mealplan_cli.mealplans.generation.plan_report import cuisine_report, macro_declines
from mealplan_cli.mealplans.generation.planner import (
    Planner,
    Progress,
    ProgressCallback,
    ResumingPlanner,
    no_progress,
)
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.resume import recheck_days
from mealplan_cli.mealplans.generation.shopping import shopping_list
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator
from mealplan_cli.ops.errors import PhotosUnavailableError, PlanRejectedError

PHOTO_CONCURRENCY = 4
NO_PHOTOS = "none: photos are off (set UNSPLASH_ACCESS_KEY to add them)"


async def generate_meal_plan(
    request: MealPlanRequest,
    *,
    planner: Planner,
    images: UnsplashPhotos | None = None,
    on_progress: ProgressCallback = no_progress,
    table: FoodTable | None = None,
    on_day: Callable[[Day], None] | None = None,
    saved_days: Iterable[Day] = (),
) -> MealPlan:
    """Plan, validate, illustrate and total a meal plan; raises a ``GenerationError``.

    ``on_day`` is told each day as soon as the planner has validated it (as the finished plan
    will show it, less its photos), so a caller can publish day 1 before the week is done.
    ``saved_days`` are days an earlier attempt told: those that pass the validator again are
    kept by a planner that can resume, and not paid for twice.
    """
    started = time.monotonic()
    table = table or default_table()
    validator = PlanValidator(request, table)

    def day_ready(number: int, meals: list[CheckedMeal]) -> None:
        if on_day is not None:
            on_day(_day(request, number, meals))

    precheck(request, validator, planner.name)
    done = recheck_days(validator, saved_days) if isinstance(planner, ResumingPlanner) else {}
    if done:
        assert isinstance(planner, ResumingPlanner)
        result = await planner.resume(request, validator, on_progress, day_ready, done)
    else:
        result = await planner.plan(request, validator, on_progress, day_ready)
    days = [_day(request, number, meals) for number, meals in enumerate(result.days, start=1)]
    photos_note = NO_PHOTOS
    if images is not None:
        photos_note = await attach_photos(days, images, on_progress)
    on_progress(Progress("validation", 0, 1, "checking the whole plan"))
    problems = validator.plan_violations(days)
    if problems:
        raise PlanRejectedError(
            f"the plan failed validation ({len(problems)} problems): {problems[0]}", problems
        )
    on_progress(Progress("validation", 1, 1, "plan valid"))
    unknown = sorted(
        {name for meals in result.days for m in meals for name in m.unknown_ingredients}
    )
    totals = _sum(day.totals for day in days)
    return MealPlan(
        request=request,
        days=days,
        totals=totals.rounded(),
        daily_average=totals.scaled(1 / max(len(days), 1)).rounded(),
        shopping_list=shopping_list(days, table),
        metadata=PlanMetadata(
            planner=planner.name,
            model=result.model,
            seed=result.seed,
            usage=result.usage,
            duration_ms=round((time.monotonic() - started) * 1000),
            photos=photos_note,
            validation=ValidationReport(
                passed=True,
                scaled=result.scaled,
                rejected=result.rejected,
                unknown_ingredients=unknown,
                notes=result.notes,
                macros=macro_declines(request, days),
            ),
            exclusions=validator.exclusions.report(table),
            cuisines=cuisine_report(request, days, result.cuisine_note),
        ),
    )


def _sum(parts: Iterable[Nutrition]) -> Nutrition:
    total = Nutrition()
    for part in parts:
        total = total + part
    return total


def _day(request: MealPlanRequest, number: int, meals: list[CheckedMeal]) -> Day:
    totals = _sum([m.meal.nutrition for m in meals]).rounded()
    return Day(
        day=number,
        meals=[m.meal for m in meals],
        totals=totals,
        target_kcal=request.calories,
        deviation_pct=round((totals.kcal - request.calories) / request.calories * 100, 1),
    )


async def attach_photos(
    days: list[Day], images: UnsplashPhotos, on_progress: ProgressCallback
) -> str:
    """Give each meal a photo where Unsplash has one; returns the note for the metadata.

    The first failure stops all further asking (a rate limit will not lift mid-plan); the meals
    already illustrated keep their photos.
    """
    titles = list(dict.fromkeys(meal.title for day in days for meal in day.meals))
    found: dict[str, Photo | None] = {}
    stopped: list[str] = []
    gate = asyncio.Semaphore(PHOTO_CONCURRENCY)
    done = 0

    async def fetch(title: str) -> None:
        nonlocal done
        async with gate:
            if stopped:
                return
            try:
                found[title] = await images.photo_for(title)
            except PhotosUnavailableError as error:
                stopped.append(str(error))
                return
        done += 1
        on_progress(Progress("photos", done, len(titles), title))

    on_progress(Progress("photos", 0, len(titles), "looking for photos"))
    await asyncio.gather(*(fetch(title) for title in titles))
    used: dict[str, Photo] = {}
    for day in days:
        for meal in day.meals:
            photo = found.get(meal.title)
            if photo is not None:
                meal.photo = photo
                used.setdefault(photo.id, photo)
    for photo in used.values():
        try:
            await images.mark_used(photo)
        except PhotosUnavailableError as error:
            stopped.append(f"download tracking: {error}")
            break
    with_photo = sum(1 for day in days for meal in day.meals if meal.photo)
    total = sum(len(day.meals) for day in days)
    note = (
        f"unsplash: {with_photo} of {total} meals have a photo "
        f"({images.stats.searches} searches, {images.stats.cache_hits} from cache)"
    )
    if stopped:
        note += f"; stopped early: {stopped[0]}"
    return note
