"""Portions: the calorie tolerance of a day, scaling a draft, and a saved meal per serving."""

from __future__ import annotations

from mealplan_cli.generation.drafts import DraftIngredient, DraftMeal
from mealplan_cli.generation.models import Meal

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
                "quantity": round(ingredient.quantity * factor, 2),
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
