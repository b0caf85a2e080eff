"""The request a user makes and the plan they get back.

``MealPlanRequest`` is what an app sends (validated, every bound named by its field);
``MealPlan`` is what it reads back, published as a JSON Schema in ``schema/``. Planners do not
build ``Meal`` objects themselves: they propose ``DraftMeal``s, and only the validator turns a
draft into a ``Meal``, with nutrition, allergens and diet computed in code.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mealplan_cli.errors import InvalidRequestError
from mealplan_cli.generation.vocabulary import ALLERGEN_ALIASES as ALLERGEN_ALIASES
from mealplan_cli.generation.vocabulary import SLOT_ORDER as SLOT_ORDER
from mealplan_cli.generation.vocabulary import Allergen as Allergen
from mealplan_cli.generation.vocabulary import Diet as Diet
from mealplan_cli.generation.vocabulary import Slot as Slot
from mealplan_cli.generation.vocabulary import alias_help as alias_help
from mealplan_cli.generation.vocabulary import allergen_families as allergen_families

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


def _split_words(value: Any) -> Any:
    """Accept ``"a,b"`` as well as ``["a", "b"]`` for list fields (CLI options, form fields)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


class MacroSplit(BaseModel):
    """Share of daily energy from each macronutrient, in percent; the three sum to 100."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protein: int = Field(ge=5, le=60)
    carbs: int = Field(ge=0, le=80)
    fat: int = Field(ge=10, le=80)

    @model_validator(mode="after")
    def _sums_to_100(self) -> MacroSplit:
        total = self.protein + self.carbs + self.fat
        if total != 100:
            raise ValueError(f"protein + carbs + fat must sum to 100 percent, got {total}")
        return self

    @classmethod
    def parse(cls, text: str) -> MacroSplit:
        """Parse ``"30/40/30"`` (protein/carbs/fat); raises ``ValueError`` saying what is wrong."""
        parts = text.replace(",", "/").split("/")
        try:
            protein, carbs, fat = (int(p.strip()) for p in parts)
        except ValueError:
            raise ValueError(
                "macros must be three whole percentages protein/carbs/fat, like 30/40/30"
            ) from None
        try:
            return cls(protein=protein, carbs=carbs, fat=fat)
        except ValidationError as error:
            first = error.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{where}: {message}" if where else message) from None


class MealPlanRequest(BaseModel):
    """What a user asks for. Unknown fields are refused so that typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: int = Field(7, ge=1, le=14, description="Number of days to plan.")
    meals: list[Slot] = Field(
        default_factory=lambda: [Slot.breakfast, Slot.lunch, Slot.dinner],
        min_length=1,
        max_length=4,
        description="Meal slots per day.",
    )
    calories: int = Field(2000, ge=1200, le=5000, description="Target kcal per day.")
    macros: MacroSplit | None = Field(None, description="Optional macro split in percent.")
    diet: list[Diet] = Field(
        default_factory=lambda: [Diet.omnivore],
        max_length=5,
        description="Diets to keep, combinable (vegan and gluten_free, say).",
    )
    allergies: list[Allergen] = Field(
        default_factory=list,
        max_length=14,
        description="Allergen families to avoid; aliases widen (shellfish = crustaceans + "
        "molluscs, nuts = tree_nuts + peanuts, seafood = fish + crustaceans + molluscs).",
    )
    exclude: list[ShortText] = Field(
        default_factory=list, max_length=30, description="Ingredients to leave out."
    )
    cuisines: list[ShortText] = Field(default_factory=list, max_length=10)
    household_size: int = Field(1, ge=1, le=12, description="Servings cooked per meal.")
    max_cook_minutes: int | None = Field(
        None, ge=5, le=480, description="Maximum prep plus cook time per meal."
    )
    notes: str = Field(
        "",
        max_length=500,
        description="Free text from the user; treated as data, never as instructions.",
    )

    @field_validator("exclude", "cuisines", mode="before")
    @classmethod
    def _lists_from_text(cls, value: Any) -> Any:
        return _split_words(value)

    @field_validator("meals", "diet", "allergies", mode="before")
    @classmethod
    def _choice_spelling(cls, value: Any, info: ValidationInfo) -> Any:
        """ "Gluten-free" is ``gluten_free``, "soy" is ``soybeans``: forgive the usual spellings."""
        value = _split_words(value)
        if not isinstance(value, list):
            return value
        spelled = [v.strip().lower().replace("-", "_") if isinstance(v, str) else v for v in value]
        if info.field_name == "allergies":
            widened: list[Any] = []
            for v in spelled:
                families = allergen_families(v) if isinstance(v, str) else None
                widened += list(families) if families else [v]
            return list(dict.fromkeys(widened))
        return spelled

    @field_validator("meals")
    @classmethod
    def _slot_order(cls, value: list[Slot]) -> list[Slot]:
        return [slot for slot in SLOT_ORDER if slot in value]

    @field_validator("diet")
    @classmethod
    def _diets(cls, value: list[Diet]) -> list[Diet]:
        diets = _unique(value)
        specific = [d for d in diets if d is not Diet.omnivore]
        return specific or [Diet.omnivore]

    @field_validator("allergies")
    @classmethod
    def _unique_allergies(cls, value: list[Allergen]) -> list[Allergen]:
        return _unique(value)

    @field_validator("exclude", "cuisines")
    @classmethod
    def _lower_unique(cls, value: list[str]) -> list[str]:
        return _unique([v.lower() for v in value])

    @field_validator("notes")
    @classmethod
    def _strip_notes(cls, value: str) -> str:
        return value.strip()


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

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
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


class DraftIngredient(BaseModel):
    """An ingredient as a planner proposes it; the figures are the planner's claim for ``grams``."""

    name: str
    quantity: float
    unit: str
    grams: float
    food_id: str | None = Field(
        None, description="The table entry chosen; without it the name must name one."
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


def parse_request(data: Any) -> MealPlanRequest:
    """A validated request from JSON-like data; raises ``InvalidRequestError`` naming each field."""
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"a meal-plan request must be a JSON object, got {type(data).__name__}"
        )
    try:
        return MealPlanRequest.model_validate(data)
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in problem["loc"]) or "request"
            message = str(problem["msg"]).removeprefix("Value error, ")
            problems.append(f"{field}: {message}")
        raise InvalidRequestError("invalid meal-plan request: " + "; ".join(problems)) from None


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``MealPlan``, as published in ``schema/meal-plan.schema.json``."""
    schema = MealPlan.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/mealworker/mealworker/schema/meal-plan.schema.json",
        **schema,
    }
