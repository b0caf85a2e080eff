"""What a planner proposes: a meal of one serving, before the validator builds a ``Meal``.

Planners do not build ``Meal`` objects themselves; the figures a draft carries are the
planner's claim, recomputed from the food table by the validator.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from mealplan_cli.mealplans.generation.vocabulary import Slot


class DraftIngredient(BaseModel):
    """An ingredient as a planner proposes it; the figures are the planner's claim for ``grams``.

    The meal prints the food's own name (``ingredient_names``): ``name`` only finds the food
    when there is no ``food_id``, and ``qualifier`` may add a preparation from a closed list."""

    name: str = ""
    quantity: float
    unit: str
    grams: float
    food_id: str | None = Field(
        None, description="The table entry chosen; without it the name must name one."
    )
    qualifier: str | None = Field(
        None, description="How it is cut or prepared, one of ``ingredient_names.Qualifier``."
    )
    kcal: float | None = None
    protein: float | None = None
    carbs: float | None = None
    fat: float | None = None


class DraftMeal(BaseModel):
    """A meal as a planner proposes it (one serving), before validation."""

    slot: Slot
    title: str
    description: str = ""
    cuisine: str | None = None
    main_protein: str | None = None
    ingredients: list[DraftIngredient]
    steps: list[str]
    prep_minutes: int = 0
    cook_minutes: int = 0
    tags: list[str] = Field(default_factory=list)
    recipe_id: str | None = None
