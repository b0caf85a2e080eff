"""The request options shared by every command that makes a meal-plan request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mealplan_cli.mealplans.generation.vocabulary import alias_help
from mealplan_cli.ops.errors import InvalidRequestError

if TYPE_CHECKING:
    from mealplan_cli.mealplans.generation.request import MealPlanRequest

RequestFile = Annotated[
    Path | None,
    typer.Option(
        "--request",
        help="A JSON file with the request; options given as well override its fields.",
        dir_okay=False,
    ),
]
Days = Annotated[int | None, typer.Option(help="Days to plan, 1-14 (default 7).")]
Meals = Annotated[
    str | None,
    typer.Option(help="Meal slots, comma-separated: breakfast,lunch,dinner,snack."),
]
Calories = Annotated[int | None, typer.Option(help="Target kcal per day, 1200-5000.")]
Macros = Annotated[
    str | None, typer.Option(help="Macro split protein/carbs/fat in percent, e.g. 30/40/30.")
]
DietOption = Annotated[
    str | None,
    typer.Option(
        "--diet",
        help="Diets, comma-separated: omnivore, vegetarian, vegan, pescatarian, keto, paleo, "
        "mediterranean, gluten_free, dairy_free.",
    ),
]
Allergies = Annotated[
    str | None,
    typer.Option(
        help="Allergen families, comma-separated: gluten, crustaceans, eggs, fish, peanuts, "
        "soybeans, milk, tree_nuts, celery, mustard, sesame, sulphites, lupin, molluscs. "
        "Aliases widen, never narrow: " + alias_help() + "."
    ),
]
Exclude = Annotated[str | None, typer.Option(help="Ingredients to leave out, comma-separated.")]
Cuisines = Annotated[str | None, typer.Option(help="Preferred cuisines, comma-separated.")]
Household = Annotated[int | None, typer.Option(help="Servings per meal, 1-12 (default 1).")]
MaxCook = Annotated[int | None, typer.Option(help="Maximum prep plus cook minutes per meal.")]
Notes = Annotated[str | None, typer.Option(help="Free-text notes (at most 500 characters).")]


@dataclass
class RequestOptions:
    file: Path | None = None
    days: int | None = None
    meals: str | None = None
    calories: int | None = None
    macros: str | None = None
    diet: str | None = None
    allergies: str | None = None
    exclude: str | None = None
    cuisines: str | None = None
    household_size: int | None = None
    max_cook_minutes: int | None = None
    notes: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RequestOptions:
        """The request options among a command's parameters (``ctx.params``).

        ``ctx.params`` holds what the option parser made of each value: before typer 0.29 a
        path is still a string there (only the command's own arguments are converted).
        """
        renamed = {"request_file": "file", "household": "household_size"}
        fields = set(cls.__dataclass_fields__)
        values = {renamed.get(name, name): value for name, value in params.items()}
        options = cls(**{name: value for name, value in values.items() if name in fields})
        if options.file is not None:
            options.file = Path(options.file)
        return options

    def build(self) -> MealPlanRequest:
        """The request from the file (if any) with the given options on top."""
        from mealplan_cli.mealplans.generation.request import MacroSplit, parse_request

        data: dict[str, Any] = {}
        if self.file is not None:
            data = _read_json(self.file)
        for name in (
            "days",
            "meals",
            "calories",
            "diet",
            "allergies",
            "exclude",
            "cuisines",
            "household_size",
            "max_cook_minutes",
            "notes",
        ):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.macros is not None:
            try:
                data["macros"] = MacroSplit.parse(self.macros).model_dump()
            except ValueError as error:
                raise InvalidRequestError(f"invalid --macros {self.macros!r}: {error}") from None
        return parse_request(data)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequestError(f"request file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidRequestError(f"cannot read request file {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise InvalidRequestError(
            f"request file {path} is not valid JSON (line {error.lineno}: {error.msg})"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"request file {path} must hold a JSON object")
    return data
