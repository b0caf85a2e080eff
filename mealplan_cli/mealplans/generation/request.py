"""The request a user makes: what an app sends, validated, every bound named by its field.

``parse_request`` turns JSON-like data into a ``MealPlanRequest`` or an ``InvalidRequestError``
naming each wrong field; common spellings ("Gluten-free", "soy", "a,b") are forgiven.
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

from mealplan_cli.mealplans.generation.vocabulary import (
    SLOT_ORDER,
    Allergen,
    Diet,
    Slot,
    alias_help,
    allergen_families,
)
from mealplan_cli.ops.errors import InvalidRequestError

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
        """ "Gluten-free" and "gluten free" are ``gluten_free``, "soy" is ``soybeans``: forgive
        the usual spellings (the database's ``mealworker_private.choice_word`` reads them so)."""
        value = _split_words(value)
        if not isinstance(value, list):
            return value
        spelled = [
            v.strip().lower().replace("-", "_").replace(" ", "_") if isinstance(v, str) else v
            for v in value
        ]
        if info.field_name == "allergies":
            widened: list[Any] = []
            for v in spelled:
                families = allergen_families(v) if isinstance(v, str) else None
                if families is None and isinstance(v, str):
                    raise ValueError(
                        f"unknown allergen {v!r}: use the EU families "
                        f"({', '.join(a.value for a in Allergen)}) or an alias ({alias_help()})"
                    )
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
