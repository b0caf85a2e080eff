"""Draft meals and checked plan days built from the food table, for the planners' and
validator's tests."""

from __future__ import annotations

from typing import Any

from mealplan_cli.mealplans.generation.drafts import DraftIngredient, DraftMeal
from mealplan_cli.mealplans.generation.foods import default_table
from mealplan_cli.mealplans.generation.meal_facts import Violation
from mealplan_cli.mealplans.generation.models import Day
from mealplan_cli.mealplans.generation.portions import scale_draft
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator
from mealplan_cli.mealplans.generation.vocabulary import Slot


def ingredient(name: str, grams: float, **figures: float) -> DraftIngredient:
    return DraftIngredient(name=name, quantity=grams, unit="g", grams=grams, **figures)


def draft(title: str, *ingredients: DraftIngredient, **extra: Any) -> DraftMeal:
    values: dict[str, Any] = {
        "slot": Slot.dinner,
        "title": title,
        "ingredients": list(ingredients),
        "steps": ["Cook.", "Serve."],
        "prep_minutes": 10,
        "cook_minutes": 20,
        **extra,
    }
    return DraftMeal(**values)


def salmon_bowl(title: str = "Salmon Quinoa Bowl", **extra: Any) -> DraftMeal:
    return draft(
        title,
        ingredient("salmon fillet", 150),
        ingredient("quinoa, cooked", 200),
        ingredient("broccoli", 100),
        ingredient("olive oil", 10),
        **extra,
    )


def checked(result: CheckedMeal | list[Violation]) -> CheckedMeal:
    assert not isinstance(result, list), [str(v) for v in result]
    return result


def _plan_days(request: MealPlanRequest, titles_and_proteins: list[tuple[str, str]]) -> list[Day]:
    v = PlanValidator(request)
    days = []
    table = default_table()
    for number, (title, protein) in enumerate(titles_and_proteins, start=1):
        base = salmon_bowl(title=title, main_protein=protein)
        food = table.lookup(protein) or table.lookup(f"firm {protein}")
        assert food is not None, protein
        base.ingredients[0] = ingredient(food.name, 150)  # the main protein is in the meal
        kcal = checked(v.check(base)).meal.nutrition.kcal
        meal = checked(v.check(scale_draft(base, request.calories / kcal))).meal
        days.append(
            Day(
                day=number,
                meals=[meal],
                totals=meal.nutrition,
                target_kcal=request.calories,
                deviation_pct=0,
            )
        )
    return days
