"""What the OpenAI planner's calls answer with: the outline, and a day whose ingredients are
food ids from an enum of the foods safe for the request (``day_schema``)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from mealplan_cli.mealplans.generation.drafts import DraftIngredient, DraftMeal
from mealplan_cli.mealplans.generation.ingredient_names import Qualifier
from mealplan_cli.mealplans.generation.validation import PlanValidator
from mealplan_cli.mealplans.generation.vocabulary import Slot
from mealplan_cli.ops.errors import InfeasibleRequestError


class OutlineMeal(BaseModel):
    slot: Slot
    title: str
    main_protein: str
    cuisine: str


class OutlineDay(BaseModel):
    day: int
    meals: list[OutlineMeal]


class PlanOutline(BaseModel):
    """The first call's answer: a title for every meal, chosen for variety."""

    days: list[OutlineDay]


class LlmIngredient(BaseModel):
    """One ingredient as the model writes it. In the schema sent for a request, ``food_id`` is
    an enum of the foods safe for that request (``day_schema``), so an unsafe food cannot be
    written at all; nutrition comes from the table entry, never from the model. The model
    writes no name: the recipe prints the food's own, with at most a preparation from a closed
    list (an enum too), so nothing it writes can rename the food. Any other field is refused."""

    model_config = ConfigDict(extra="forbid")

    food_id: str = Field(description="The food, chosen from the allowed list.")
    qualifier: Qualifier | None = Field(
        description="How it is cut or prepared, or null; the recipe prints the food's own name."
    )
    quantity: float
    unit: str
    grams: float = Field(description="Weight for one serving.")


class LlmMeal(BaseModel):
    slot: Slot
    title: str
    description: str
    cuisine: str
    main_protein: str = Field(description="Main protein source, or 'none'.")
    ingredients: list[LlmIngredient]
    steps: list[str]
    prep_minutes: int
    cook_minutes: int
    tags: list[str]

    def draft(self) -> DraftMeal:
        return DraftMeal(
            slot=self.slot,
            title=self.title,
            description=self.description,
            cuisine=self.cuisine,
            main_protein=self.main_protein,
            ingredients=[
                DraftIngredient(
                    qualifier=i.qualifier.value if i.qualifier is not None else None,
                    quantity=i.quantity,
                    unit=i.unit,
                    grams=i.grams,
                    food_id=str(getattr(i.food_id, "value", i.food_id)),
                )
                for i in self.ingredients
            ],
            steps=self.steps,
            prep_minutes=self.prep_minutes,
            cook_minutes=self.cook_minutes,
            tags=self.tags,
        )


class DayPlan(BaseModel):
    """A day call's answer: every requested meal of one day, one serving each."""

    day: int
    meals: list[LlmMeal]


MAX_ENUM_VALUES = 1000
"""OpenAI structured outputs: at most this many enum values in one schema."""

MAX_ENUM_CHARS = 15000
"""OpenAI structured outputs: an enum of more than 250 values may total this many characters."""

MIN_SAFE_FOODS = 25
"""Fewer foods than this cannot make a varied plan: the request is refused as infeasible."""


@lru_cache(maxsize=32)
def day_schema(food_ids: tuple[str, ...]) -> type[DayPlan]:
    """``DayPlan`` whose ``food_id`` may only be one of ``food_ids`` (an enum in the schema)."""
    if len(food_ids) > MAX_ENUM_VALUES - 10 or sum(map(len, food_ids)) > MAX_ENUM_CHARS:
        raise ValueError(
            f"{len(food_ids)} food ids exceed OpenAI's enum limits: split the schema by slot"
        )
    food_enum: Any = StrEnum("FoodId", [(food, food) for food in food_ids])  # type: ignore[misc]
    ingredient = create_model(
        "LlmIngredient",
        __base__=LlmIngredient,
        food_id=(food_enum, Field(description="The food, from the foods safe for this request.")),
    )
    meal = create_model("LlmMeal", __base__=LlmMeal, ingredients=(list[ingredient], ...))
    schema: type[DayPlan] = create_model("DayPlan", __base__=DayPlan, meals=(list[meal], ...))
    return schema


def safe_foods(validator: PlanValidator) -> tuple[str, ...]:
    """Ids of the foods a request allows; raises ``InfeasibleRequestError`` naming the
    constraint that left too few."""
    table = validator.table
    allowed = tuple(sorted(food.id for food in table.foods if validator.allows(food)))
    if len(allowed) >= MIN_SAFE_FOODS:
        return allowed
    request = validator.request
    parts = []
    for label, fields in (
        ("the diet " + " + ".join(d.value for d in request.diet), {"allergies": [], "exclude": []}),
        (
            "the allergies " + ", ".join(a.value for a in request.allergies),
            {"diet": ["omnivore"], "exclude": []},
        ),
        ("the exclusions " + ", ".join(request.exclude), {"diet": ["omnivore"], "allergies": []}),
    ):
        alone = PlanValidator(request.model_copy(update=fields), table)
        kept = sum(1 for food in table.foods if alone.allows(food))
        if kept < len(table):
            parts.append(f"{label} alone leaves {kept}")
    raise InfeasibleRequestError(
        f"only {len(allowed)} of {len(table)} foods are safe for this request, too few for a "
        f"varied plan ({'; '.join(parts)}): loosen the constraint that removes the most"
    )
