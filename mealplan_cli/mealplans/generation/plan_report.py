"""What a finished plan reports about the preferences it could not fully keep: the days whose
macro split is more than 5 points from the request (declined, with the reason), and how many
meals come from the cuisines asked for. Any planner's plan is read the same way, from its days.
"""

from __future__ import annotations

from collections.abc import Sequence

from mealplan_cli.mealplans.generation.day_balance import MACRO_TOLERANCE, shares, within
from mealplan_cli.mealplans.generation.models import CuisineReport, Day, MacroDecline, MacroShares
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.vocabulary import Diet

CUISINE_SHARE = 2 / 3
"""When cuisines are asked for, at least this share of meals should come from them."""

_NAMES = ("protein", "carbs", "fat")


def constraints_phrase(request: MealPlanRequest) -> str:
    """The request's constraints in one phrase: "vegan + keto + no gluten + without onion"."""
    parts = []
    if any(d is not Diet.omnivore for d in request.diet):
        parts.append(" + ".join(d.value for d in request.diet))
    if request.allergies:
        parts.append("no " + ", ".join(a.value for a in request.allergies))
    if request.exclude:
        parts.append("without " + ", ".join(request.exclude))
    if request.max_cook_minutes is not None:
        parts.append(f"at most {request.max_cook_minutes} minutes")
    return " + ".join(parts)


def macro_declines(request: MealPlanRequest, days: Sequence[Day]) -> list[MacroDecline]:
    """Each day whose split misses the request by more than 5 points, with why."""
    macros = request.macros
    if macros is None:
        return []
    asked = (macros.protein, macros.carbs, macros.fat)
    constraints = constraints_phrase(request)
    declines = []
    for day in days:
        got = shares(day.totals)
        if within(got, macros):
            continue
        misses = [
            f"{name} {g:.0f}% against {a}%"
            for name, g, a in zip(_NAMES, got, asked, strict=True)
            if abs(g - a) > MACRO_TOLERANCE
        ]
        reason = (
            f"{', '.join(misses)}: the closest the dishes and sides "
            + (f"that fit {constraints} " if constraints else "of this day ")
            + f"could come within {request.calories} kcal and typical portions"
        )
        declines.append(
            MacroDecline(
                day=day.day,
                asked=MacroShares(protein=asked[0], carbs=asked[1], fat=asked[2]),
                got=MacroShares(
                    protein=round(got[0], 1), carbs=round(got[1], 1), fat=round(got[2], 1)
                ),
                reason=reason,
            )
        )
    return declines


def cuisine_report(
    request: MealPlanRequest, days: Sequence[Day], reason: str | None = None
) -> CuisineReport | None:
    """How many meals come from the cuisines asked for, and a note when under 2 of 3: the
    planner's ``reason`` if it checked one, else only what was served."""
    if not request.cuisines:
        return None
    meals = [meal for day in days for meal in day.meals]
    hits = sum(1 for meal in meals if meal.cuisine in request.cuisines)
    share = hits / max(len(meals), 1)
    note = None
    if share < CUISINE_SHARE - 1e-9:
        note = reason or (
            f"{hits} of {len(meals)} meals come from the cuisines asked for; this planner "
            "gives no reason for fewer"
        )
    return CuisineReport(
        asked=list(request.cuisines),
        meals=len(meals),
        from_asked=hits,
        share=round(share, 3),
        note=note,
    )
