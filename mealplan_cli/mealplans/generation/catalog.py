"""The bundled recipe catalogue (``data/recipes*.json``, format in ``data/FORMAT.md``)."""

from __future__ import annotations

import json
from functools import cache

from pydantic import BaseModel, ConfigDict, Field

from mealplan_cli.mealplans.generation.drafts import DraftIngredient, DraftMeal
from mealplan_cli.mealplans.generation.foods import data_files
from mealplan_cli.mealplans.generation.portions import scale_draft
from mealplan_cli.mealplans.generation.vocabulary import Slot

CUISINES = (
    "american",
    "mexican",
    "italian",
    "mediterranean",
    "greek",
    "middle_eastern",
    "indian",
    "thai",
    "japanese",
    "chinese",
    "korean",
    "vietnamese",
    "french",
    "spanish",
    "north_african",
    "caribbean",
    "british",
)


class RecipeIngredient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    grams: float = Field(gt=0)
    quantity: float = Field(gt=0)
    unit: str


class Recipe(BaseModel):
    """One catalogue recipe, one serving."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    description: str
    slots: list[Slot] = Field(min_length=1)
    cuisine: str
    main_protein: str | None
    method: str
    prep_minutes: int = Field(ge=0)
    cook_minutes: int = Field(ge=0)
    ingredients: list[RecipeIngredient] = Field(min_length=1)
    steps: list[str] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)

    @property
    def minutes(self) -> int:
        return self.prep_minutes + self.cook_minutes

    def draft(self, slot: Slot, portion: float = 1.0) -> DraftMeal:
        """The recipe as a planner's proposal for ``slot``, ``portion`` times one serving."""
        serving = DraftMeal(
            slot=slot,
            title=self.title,
            description=self.description,
            cuisine=self.cuisine,
            main_protein=self.main_protein,
            ingredients=[
                DraftIngredient(name=i.name, quantity=i.quantity, unit=i.unit, grams=i.grams)
                for i in self.ingredients
            ],
            steps=list(self.steps),
            prep_minutes=self.prep_minutes,
            cook_minutes=self.cook_minutes,
            tags=list(self.tags),
            recipe_id=self.id,
        )
        return scale_draft(serving, portion)


@cache
def _by_id() -> dict[str, Recipe]:
    return {recipe.id: recipe for recipe in default_catalog()}


def recipe_by_id(recipe_id: str) -> Recipe | None:
    """The bundled recipe ``recipe_id``, if there is one."""
    return _by_id().get(recipe_id)


@cache
def default_catalog() -> tuple[Recipe, ...]:
    """Every bundled recipe, loaded once per process."""
    return tuple(
        Recipe.model_validate(row) for text in data_files("recipes") for row in json.loads(text)
    )
