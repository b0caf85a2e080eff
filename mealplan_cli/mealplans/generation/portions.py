"""Portions: the calorie tolerance of a day, scaling a draft, a saved meal per serving, and how
much of one food a serving may hold."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mealplan_cli.mealplans.generation.drafts import DraftIngredient, DraftMeal
from mealplan_cli.mealplans.generation.foods import Food
from mealplan_cli.mealplans.generation.models import Meal

DAY_TOLERANCE = 0.05
"""Each day's energy must be within this share of the target."""

SCALE_RANGE = (0.75, 1.33)
"""A day whose energy is off the target by a ratio in this range is fixed by scaling portions."""


def scale_draft(draft: DraftMeal, factor: float) -> DraftMeal:
    """The same meal with every amount (and any stated figure) multiplied by ``factor``."""

    def scale(ingredient: DraftIngredient) -> DraftIngredient:
        def times(value: float | None) -> float | None:
            return None if value is None else value * factor

        return ingredient.model_copy(
            update={
                "quantity": _counted(ingredient.quantity * factor, ingredient.unit),
                "grams": round(ingredient.grams * factor, 1),
                "kcal": times(ingredient.kcal),
                "protein": times(ingredient.protein),
                "carbs": times(ingredient.carbs),
                "fat": times(ingredient.fat),
            }
        )

    return draft.model_copy(update={"ingredients": [scale(i) for i in draft.ingredients]})


def per_serving_draft(meal: Meal) -> DraftMeal:
    """A saved meal read back as one serving of a draft."""
    servings = max(meal.servings, 1)
    return DraftMeal(
        slot=meal.slot,
        title=meal.title,
        description=meal.description,
        cuisine=meal.cuisine,
        main_protein=meal.main_protein,
        ingredients=[
            DraftIngredient(
                name=i.name,
                quantity=i.quantity / servings,
                unit=i.unit,
                grams=i.grams / servings,
                food_id=i.food_id,
                qualifier=i.qualifier,
            )
            for i in meal.ingredients
        ],
        steps=meal.steps,
        prep_minutes=meal.prep_minutes,
        cook_minutes=meal.cook_minutes,
        tags=meal.tags,
        recipe_id=meal.recipe_id,
    )


_AISLE_MAX_GRAMS = {
    "meat & fish": 225.0,
    "produce": 350.0,
    "dairy & eggs": 300.0,
    "bakery": 150.0,
    "grains & pasta": 350.0,
    "canned & jarred": 300.0,
    "nuts & seeds": 60.0,
    "oils, sauces & condiments": 100.0,
    "spices & herbs": 15.0,
    "baking & sweeteners": 60.0,
    "plant-based & tofu": 250.0,
    "frozen": 300.0,
    "drinks": 400.0,
}
"""The most of one food a cook would put in one serving, by aisle: a large steak, a big bowl of
rice, a handful of nuts."""


def max_serving_grams(food: Food) -> float:
    """The most of ``food`` one serving may hold: its aisle's typical limit, and for dense foods
    a limit on the energy they bring (two tablespoons of oil, a generous slice of cheese)."""
    grams = _AISLE_MAX_GRAMS.get(food.aisle, 300.0)
    if "egg" in food.flags and food.aisle == "dairy & eggs":
        grams = 180.0  # three eggs
    density = food.per_100g.kcal / 100.0
    if density > 6.0:
        grams = min(grams, 250.0 / density)  # oil, butter, nuts: about 250 kcal
    elif density > 3.0:
        grams = min(grams, 300.0 / density)  # cheese, dry pasta, chocolate: about 300 kcal
    return grams


def portion_limit(ingredients: Sequence[tuple[Food | None, float]]) -> float:
    """The largest factor one serving of a recipe may be scaled by before one of its foods
    passes ``max_serving_grams``; never below 1 (the recipe's own serving is typical)."""
    limit = math.inf
    for food, grams in ingredients:
        if food is not None and grams > 0:
            limit = min(limit, max_serving_grams(food) / grams)
    return max(limit, 1.0)


UNIT_NAMES = {
    "teaspoon": "tsp",
    "teaspoons": "tsp",
    "tablespoon": "tbsp",
    "tablespoons": "tbsp",
    "cups": "cup",
    "pieces": "piece",
    "cloves": "clove",
    "slices": "slice",
    "cans": "can",
    "pinches": "pinch",
    "stalks": "stalk",
    "leaves": "leaf",
    "packs": "pack",
    "fillets": "fillet",
    "squares": "square",
    "grams": "g",
    "gram": "g",
}

WHOLE_UNITS = frozenset({"pinch", "clove", "can", "slice", "leaf", "pack", "fillet", "square"})
"""Units a cook counts whole: nobody adds 3.18 pinches."""

HALF_UNITS = frozenset({"piece", "stalk", "tbsp", "tsp"})
"""Units a cook halves but no finer: half an onion, half a teaspoon."""


def _counted(quantity: float, unit: str) -> float:
    """A scaled amount: counted units as a cook counts them (whole pinches, half pieces);
    measured ones exact, so their grams per unit stay true for the shopping list."""
    name = unit_name(unit)
    if name in WHOLE_UNITS or name in ("piece", "stalk"):
        return kitchen_amount(quantity, unit)
    return round(quantity, 2)


def unit_name(unit: str) -> str:
    name = unit.strip().lower()
    return UNIT_NAMES.get(name, name)


def kitchen_amount(quantity: float, unit: str) -> float:
    """``quantity`` of ``unit`` as a cook writes it: whole pinches and cloves, half pieces and
    spoons, quarter cups, grams and millilitres to 5 (to 1 under 10). Never rounded to 0."""
    name = unit_name(unit)
    if quantity <= 0:
        return 0.0
    if name in WHOLE_UNITS:
        return float(max(1, round(quantity)))
    if name in HALF_UNITS:
        return max(0.5, round(quantity * 2) / 2)
    if name == "cup":
        return max(0.25, round(quantity * 4) / 4)
    if name in ("g", "ml"):
        return float(max(1, round(quantity))) if quantity < 10 else float(round(quantity / 5) * 5)
    return round(quantity, 2)
