"""Infeasible requests, named by their cause before any planning (or any paid call).

``precheck`` runs first in the pipeline, whichever the planner: against the catalogue for the
catalogue planner ("No breakfast fits vegan + keto + 1,400 kcal a day"), against the food
table for the OpenAI planner (too few foods are safe for the request). The catalogue planner
asks the same questions of its own recipes through ``shortage`` and ``check_day_energy``.
"""

from __future__ import annotations

from collections.abc import Sequence

from mealplan_cli.mealplans.generation.day_balance import MAX_SIDES, Dish
from mealplan_cli.mealplans.generation.foods import Food
from mealplan_cli.mealplans.generation.meal_facts import ViolationKind
from mealplan_cli.mealplans.generation.portions import max_serving_grams
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.validation import PlanValidator
from mealplan_cli.mealplans.generation.vocabulary import Slot
from mealplan_cli.ops.errors import InfeasibleRequestError

CALORIES = "calories"
"""The refusal of a recipe that cannot carry its share of the day's energy in typical portions."""

_SLACK = 1.6
"""A meal may carry this much more (or this fraction less) than its slot's share of the day:
the other meals of the day make up the difference."""

_FILTER_ORDER = (
    (ViolationKind.diet.value, "fit the diet"),
    (ViolationKind.allergy.value, "avoid the allergies"),
    (ViolationKind.exclusion.value, "avoid the excluded ingredients"),
    (ViolationKind.time.value, "fit the cooking time"),
    (CALORIES, "can carry their share of the calories in typical portions"),
)


def precheck(request: MealPlanRequest, validator: PlanValidator, planner: str) -> None:
    """Raise ``InfeasibleRequestError`` naming what makes ``request`` impossible."""
    if planner == "catalog":
        from mealplan_cli.mealplans.generation.planner_catalog import CatalogPlanner

        CatalogPlanner().precheck(request, validator)
    else:
        from mealplan_cli.mealplans.generation.planner_schema import safe_foods

        safe_foods(validator)


def side_room(sides: Sequence[Food]) -> float:
    """The most energy the best ``MAX_SIDES`` sides of a meal can add, in typical portions."""
    room = sorted((max_serving_grams(f) * f.per_100g.kcal / 100 for f in sides), reverse=True)
    return sum(room[:MAX_SIDES])


def carries(dish: Dish, room: float, share_kcal: float) -> bool:
    """Whether ``dish`` (with sides) can be portioned near ``share_kcal``."""
    kcal = dish.nutrition.kcal
    return kcal * dish.low <= share_kcal * _SLACK and kcal * dish.high + room >= share_kcal / _SLACK


def check_day_energy(
    request: MealPlanRequest, dishes: dict[Slot, list[Dish]], room: dict[Slot, float]
) -> None:
    """Whether some day of these dishes can reach the calorie target, and not overshoot it."""
    most = sum(max(d.nutrition.kcal * d.high for d in dishes[s]) + room[s] for s in dishes)
    least = sum(min(d.nutrition.kcal * d.low for d in dishes[s]) for s in dishes)
    meals = len(request.meals)
    label = f"{request.calories} kcal a day in {meals} {'meal' if meals == 1 else 'meals'}"
    if most < request.calories * 0.97:
        raise InfeasibleRequestError(
            f"could not arrange {label}: the largest dishes this request allows, in typical "
            f"portions with up to {MAX_SIDES} sides each, come to about {most:.0f} kcal. "
            "Add meals to the day or ask for fewer calories"
        )
    if least > request.calories * 1.03:
        raise InfeasibleRequestError(
            f"could not arrange {label}: the smallest dishes this request allows come to "
            f"about {least:.0f} kcal. Plan fewer meals or ask for more calories"
        )


def _describe(request: MealPlanRequest, label: str) -> str:
    if label == ViolationKind.diet.value:
        return " + ".join(d.value for d in request.diet)
    if label == ViolationKind.allergy.value:
        return "no " + ", ".join(a.value for a in request.allergies)
    if label == ViolationKind.exclusion.value:
        return "without " + ", ".join(request.exclude)
    if label == ViolationKind.time.value:
        return f"ready in {request.max_cook_minutes} minutes"
    if label == CALORIES:
        meals = len(request.meals)
        return f"{request.calories:,} kcal a day in {meals} {'meal' if meals == 1 else 'meals'}"
    return label


def _detail(request: MealPlanRequest, label: str) -> str:
    if label == ViolationKind.diet.value:
        return "diet " + " + ".join(d.value for d in request.diet)
    if label == ViolationKind.allergy.value:
        return "allergies " + ", ".join(a.value for a in request.allergies)
    if label == ViolationKind.exclusion.value:
        return "excluding " + ", ".join(request.exclude)
    if label == ViolationKind.time.value:
        return f"at most {request.max_cook_minutes} minutes"
    return f"{request.calories} kcal a day"


def shortage(request: MealPlanRequest, slot: Slot, fitting: int, refusals: list[set[str]]) -> str:
    """Which constraints left too few recipes for ``slot``: the cause first, in one phrase
    ("No breakfast fits vegan + keto + 1,400 kcal a day in 3 meals"), then the count filter by
    filter."""
    total = fitting + len(refusals)
    meals = len(request.meals)
    if fitting == 0 and any(r == {CALORIES} for r in refusals):
        return (
            f"could not arrange {request.calories} kcal a day in {meals} "
            f"{'meal' if meals == 1 else 'meals'}: no {slot.value} this request allows can "
            f"carry its share in typical portions, even with {MAX_SIDES} sides. Add meals to "
            "the day or ask for fewer calories"
        )
    present = [label for label, _ in _FILTER_ORDER if any(label in r for r in refusals)]
    # A constraint is a cause if dropping it alone would let more recipes through.
    causes = [label for label in present if sum(1 for r in refusals if r == {label})]
    named = " + ".join(_describe(request, label) for label in causes or present) or "this request"
    head = (
        f"No {slot.value} fits {named}"
        if fitting == 0
        else f"Only {fitting} {slot.value} {'recipe fits' if fitting == 1 else 'recipes fit'} "
        f"{named}"
    )
    steps = []
    remaining = refusals
    for label, text in _FILTER_ORDER:
        before = len(remaining)
        remaining = [kinds for kinds in remaining if label not in kinds]
        if len(remaining) != before:
            steps.append(f"{fitting + len(remaining)} {text} ({_detail(request, label)})")
    chain = ", of those ".join(steps) if steps else f"{fitting} fit"
    return (
        f"{head} (not enough {slot.value} recipes for this request: of {total} in the "
        f"catalogue, {chain}); {request.days} days need {request.days} different ones. Loosen "
        "that constraint, plan fewer days, or use --planner openai"
    )
