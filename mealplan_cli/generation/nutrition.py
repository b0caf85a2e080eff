"""Nutrition computed from ingredients: the table's figures, never a planner's sums."""

from __future__ import annotations

from dataclasses import dataclass

from mealplan_cli.generation.foods import FoodTable
from mealplan_cli.generation.models import DraftIngredient, Nutrition

ATWATER_TOLERANCE = 0.15
"""A food whose stated energy is more than this far off 4P + 4C + 9F is suspect (APIS.md)."""

_SMALL_KCAL = 15.0
"""Below this, a relative tolerance means nothing (a pinch of spice); compare absolutely."""


def atwater_kcal(protein: float, carbs: float, fat: float) -> float:
    return 4 * protein + 4 * carbs + 9 * fat


def passes_atwater(kcal: float, protein: float, carbs: float, fat: float) -> bool:
    """Whether ``kcal`` agrees with the energy the macronutrients imply."""
    expected = atwater_kcal(protein, carbs, fat)
    if max(kcal, expected) < _SMALL_KCAL:
        return abs(kcal - expected) < _SMALL_KCAL
    return abs(kcal - expected) <= ATWATER_TOLERANCE * max(kcal, expected)


@dataclass(frozen=True)
class IngredientFacts:
    """An ingredient's nutrition for its grams, and whether the table vouched for it."""

    nutrition: Nutrition
    from_table: bool


def ingredient_facts(ingredient: DraftIngredient, table: FoodTable) -> IngredientFacts | str:
    """The ingredient's nutrition, or why it cannot be trusted.

    The table wins whenever it knows the food. Otherwise the planner's own figures are kept only
    if they pass the Atwater check.
    """
    food = table.lookup(ingredient.name)
    if food is not None:
        return IngredientFacts(food.nutrition_for(ingredient.grams), from_table=True)
    figures = (ingredient.kcal, ingredient.protein, ingredient.carbs, ingredient.fat)
    if any(value is None for value in figures):
        return f"{ingredient.name!r} is not in the nutrition table and came without figures"
    kcal, protein, carbs, fat = (float(v or 0.0) for v in figures)
    if min(kcal, protein, carbs, fat) < 0:
        return f"{ingredient.name!r} has negative nutrition figures"
    if not passes_atwater(kcal, protein, carbs, fat):
        expected = atwater_kcal(protein, carbs, fat)
        return (
            f"{ingredient.name!r} is not in the nutrition table and its figures fail the energy "
            f"check ({kcal:.0f} kcal stated, {expected:.0f} kcal from 4P+4C+9F)"
        )
    return IngredientFacts(
        Nutrition(kcal=kcal, protein=protein, carbs=carbs, fat=fat), from_table=False
    )
