"""The plan a user gets back.

``MealPlan`` is what an app reads from ``meal_plans.plan``, published as a JSON Schema in
``schema/``. Its meals are built only by the validator, from a planner's ``DraftMeal``s
(``mealplan_cli.mealplans.generation.drafts``), with nutrition, allergens and diet computed in
code; the request it answers is ``mealplan_cli.mealplans.generation.request``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.request import parse_request as parse_request
from mealplan_cli.mealplans.generation.vocabulary import Allergen, Slot


class Nutrition(BaseModel):
    """Energy in kcal, macronutrients and fibre in grams."""

    kcal: float = 0.0
    protein: float = 0.0
    carbs: float = 0.0
    fat: float = 0.0
    fiber: float = 0.0

    def __add__(self, other: Nutrition) -> Nutrition:
        return Nutrition(
            kcal=self.kcal + other.kcal,
            protein=self.protein + other.protein,
            carbs=self.carbs + other.carbs,
            fat=self.fat + other.fat,
            fiber=self.fiber + other.fiber,
        )

    def scaled(self, factor: float) -> Nutrition:
        return Nutrition(
            kcal=self.kcal * factor,
            protein=self.protein * factor,
            carbs=self.carbs * factor,
            fat=self.fat * factor,
            fiber=self.fiber * factor,
        )

    def rounded(self) -> Nutrition:
        return Nutrition(
            kcal=round(self.kcal),
            protein=round(self.protein, 1),
            carbs=round(self.carbs, 1),
            fat=round(self.fat, 1),
            fiber=round(self.fiber, 1),
        )


class Ingredient(BaseModel):
    """An ingredient in the amount cooked for the meal's ``servings`` (the household)."""

    name: str
    quantity: float = Field(ge=0)
    unit: str
    grams: float = Field(ge=0, description="Grams for the meal's servings.")
    food_id: str | None = Field(
        None, description="The nutrition-table entry the figures come from."
    )
    qualifier: str | None = Field(
        None,
        description="How it is cut or prepared, from a closed list; the name is the food's "
        "own, followed by this.",
    )


class Photo(BaseModel):
    """An Unsplash photo, with the attribution its guidelines require."""

    id: str
    url: str = Field(description="Hotlink as given (urls.regular).")
    thumb_url: str
    blur_hash: str | None = None
    alt: str | None = None
    width: int | None = None
    height: int | None = None
    color: str | None = None
    photographer_name: str
    photographer_url: str = Field(description="Profile link with UTM attribution parameters.")
    unsplash_url: str = Field(description="Photo page with UTM attribution parameters.")
    attribution: str = Field(description='"Photo by NAME on Unsplash".')
    download_location: str | None = Field(
        None, description="Unsplash endpoint the app calls when it shows the photo."
    )


class Meal(BaseModel):
    slot: Slot
    title: str
    description: str
    cuisine: str | None = None
    main_protein: str | None = None
    ingredients: list[Ingredient]
    steps: list[str]
    prep_minutes: int
    cook_minutes: int
    servings: int
    nutrition: Nutrition = Field(description="Per serving, computed from the ingredients.")
    allergens: list[Allergen]
    tags: list[str] = Field(default_factory=list)
    recipe_id: str | None = Field(None, description="Catalogue recipe id, when it came from one.")
    photo: Photo | None = None


class Day(BaseModel):
    day: int = Field(ge=1)
    meals: list[Meal]
    totals: Nutrition = Field(description="Per person, computed in code.")
    target_kcal: int
    deviation_pct: float = Field(description="(totals.kcal - target) / target, in percent.")


class ShoppingItem(BaseModel):
    name: str
    quantity: float
    unit: str
    grams: float


class ShoppingSection(BaseModel):
    aisle: str
    items: list[ShoppingItem]


class Usage(BaseModel):
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    charged_tokens: int = 0
    """Counted against the rate limit when sent: each prompt's estimate plus its reserved
    ``max_completion_tokens``, whatever the answers used (refused calls included)."""
    rate_limited: int = 0
    """Calls OpenAI refused with a 429 although the budget let them go."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            charged_tokens=self.charged_tokens + other.charged_tokens,
            rate_limited=self.rate_limited + other.rate_limited,
        )


class ScaledMeal(BaseModel):
    day: int
    slot: Slot
    title: str
    factor: float


class RejectedMeal(BaseModel):
    day: int
    slot: Slot
    title: str
    reasons: list[str]


class MacroShares(BaseModel):
    """Share of energy from protein, carbohydrate and fat, in percent."""

    protein: float
    carbs: float
    fat: float


class MacroDecline(BaseModel):
    """A day whose macro split is more than 5 points from the request, and why."""

    day: int
    asked: MacroShares
    got: MacroShares
    reason: str


class ExclusionReport(BaseModel):
    """What one ``exclude`` term left out of the plan, and the close relatives it kept."""

    term: str
    left_out: list[str] = Field(description="Foods the term names (or whose family it is).")
    left_out_prepared: list[str] = Field(
        default_factory=list, description="Prepared foods left out because they contain one."
    )
    relatives_kept: list[str] = Field(
        default_factory=list,
        description="Close relatives kept (shallot for onion), and prepared foods with one.",
    )


class CuisineReport(BaseModel):
    """How many meals come from the cuisines asked for, and why not more when fewer than 2 of 3."""

    asked: list[str]
    meals: int
    from_asked: int
    share: float = Field(description="from_asked / meals.")
    note: str | None = None


class ValidationReport(BaseModel):
    """What the validator changed or refused on the way to the final plan."""

    passed: bool = True
    scaled: list[ScaledMeal] = Field(default_factory=list)
    rejected: list[RejectedMeal] = Field(default_factory=list)
    unknown_ingredients: list[str] = Field(
        default_factory=list,
        description="Always empty: an ingredient not in the nutrition table is refused. Kept "
        "so that clients reading older plans keep working.",
    )
    notes: list[str] = Field(default_factory=list)
    macros: list[MacroDecline] = Field(
        default_factory=list,
        description="Days whose protein/carbs/fat split is more than 5 points from the "
        "request's, with the reason: the split was declined there, not silently missed.",
    )


SAFETY_NOTICE = (
    "Allergens and diets were checked against mealworker's food table and allergen lexicon: "
    "every ingredient resolves to a table entry and every word of the recipes was read for "
    "allergens. This cannot see cross-contamination, what a brand's product actually contains, "
    "or mistakes in the table itself: check the labels of what you buy, and ask a professional "
    "if an allergy is severe."
)
"""The disclaimer every plan carries in ``metadata.safety_notice`` (the README explains it)."""


class PlanMetadata(BaseModel):
    safety_notice: str = Field(
        SAFETY_NOTICE, description="What the allergen and diet checks cannot guarantee."
    )
    planner: str
    model: str | None = None
    seed: int | None = None
    usage: Usage = Field(default_factory=Usage)
    duration_ms: int = 0
    photos: str = Field("none", description="Where photos came from, or why there are none.")
    validation: ValidationReport = Field(default_factory=ValidationReport)
    exclusions: list[ExclusionReport] = Field(default_factory=list)
    cuisines: CuisineReport | None = None


class MealPlan(BaseModel):
    """A validated plan: what the app's clients read from ``meal_plans.plan``."""

    request: MealPlanRequest
    days: list[Day]
    totals: Nutrition = Field(description="Whole plan, per person.")
    daily_average: Nutrition
    shopping_list: list[ShoppingSection] = Field(
        description="Whole plan, scaled to the household, grouped by aisle."
    )
    metadata: PlanMetadata


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``MealPlan``, as published in ``schema/meal-plan.schema.json``."""
    schema = MealPlan.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/mealworker/mealworker/schema/meal-plan.schema.json",
        **schema,
    }
