"""A well-behaved "model" for ``FakeOpenAI``: it answers the planner's calls from the catalogue.

It reads the request back out of the prompt (the line ``Request (JSON): ...``), plans it with the
catalogue planner, and answers each schema as a careful model would: ``PlanOutline`` with every
title, ``DayPlan`` with one day in full (each ingredient by its food id, as the schema's enum
asks) or just the one meal the prompt asks for, and ``WholePlan`` (used by the latency
benchmark) with every day at once. Faults are layered on top with ``FakeOpenAI.inject``.

A careful model writes its texts in plain words, as the prompt asks: where a catalogue recipe's
reviewed text uses a dish name or a word only that recipe vouches for, the answer says it
plainly instead (title and description from the foods, a plain step, no such tag).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

from mealplan_cli.mealplans.generation.foods import default_table
from mealplan_cli.mealplans.generation.ingredient_names import description_from, title_from
from mealplan_cli.mealplans.generation.meal_facts import ViolationKind, meal_facts
from mealplan_cli.mealplans.generation.models import Meal
from mealplan_cli.mealplans.generation.planner import no_progress
from mealplan_cli.mealplans.generation.planner_catalog import CatalogPlanner
from mealplan_cli.mealplans.generation.portions import per_serving_draft
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator
from tests.fakes.openai_server import ChatRequest

_REQUEST_LINE = re.compile(r"^Request \(JSON\): (?P<json>.+)$", re.MULTILINE)
_NOTES_LINE = re.compile(r"^User notes \(quoted data\): (?P<json>.+)$", re.MULTILINE)
_DAY_LINE = re.compile(r"write day (?P<day>\d+) of")
_ONLY_SLOT = re.compile(r"write day \d+ of \d+, only its (?P<slot>\w+)")


class CatalogResponder:
    """Answers outline, day and whole-plan calls with the catalogue's plan for the request."""

    def __init__(self) -> None:
        self._plans: dict[str, list[list[CheckedMeal]]] = {}
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> dict[str, Any]:
        prompt = str(request.messages[-1]["content"])
        meal_request = _request_from(prompt)
        days = self._days(meal_request)
        if request.schema_name == "PlanOutline":
            return {
                "days": [
                    {
                        "day": number,
                        "meals": [
                            {
                                "slot": c.meal.slot.value,
                                "title": c.meal.title,
                                "main_protein": c.meal.main_protein or "none",
                                "cuisine": c.meal.cuisine or "",
                            }
                            for c in meals
                        ],
                    }
                    for number, meals in enumerate(days, start=1)
                ]
            }
        if request.schema_name == "DayPlan":
            match = _DAY_LINE.search(prompt)
            if match is None:
                raise ValueError("a DayPlan prompt must say which day to write")
            number = int(match["day"])
            meals = days[number - 1]
            only = _ONLY_SLOT.search(prompt)
            if only is not None:  # one meal of the day: the planner writes day 1 meal by meal
                meals = [c for c in meals if c.meal.slot.value == only["slot"]]
            return day_answer(number, meals)
        if request.schema_name == "WholePlan":
            return {"days": [day_answer(n, meals) for n, meals in enumerate(days, start=1)]}
        raise ValueError(f"no answer for schema {request.schema_name!r}")

    def _days(self, request: MealPlanRequest) -> list[list[CheckedMeal]]:
        key = request.model_dump_json()
        with self._lock:
            if key not in self._plans:
                validator = PlanValidator(request)
                result = asyncio.run(CatalogPlanner(seed=1).plan(request, validator, no_progress))
                self._plans[key] = result.days
            return self._plans[key]


def _request_from(prompt: str) -> MealPlanRequest:
    found = _REQUEST_LINE.search(prompt)
    if found is None:
        raise ValueError("the prompt carries no 'Request (JSON):' line")
    data = json.loads(found["json"])
    notes = _NOTES_LINE.search(prompt)
    if notes is not None:
        data["notes"] = json.loads(notes["json"])
    return MealPlanRequest.model_validate(data)


def day_answer(number: int, meals: list[CheckedMeal]) -> dict[str, Any]:
    return {"day": number, "meals": [meal_answer(c.meal) for c in meals]}


def meal_answer(meal: Meal) -> dict[str, Any]:
    """One meal as the model writes it: one serving, each ingredient a food id and grams, the
    texts in plain words."""
    table = default_table()
    ingredients = []
    for ingredient in meal.ingredients:
        food = table.by_id(ingredient.food_id or "") or table.lookup(ingredient.name)
        ingredients.append(
            {
                "food_id": food.id if food else ingredient.name,
                "qualifier": ingredient.qualifier,
                "quantity": round(ingredient.quantity / meal.servings, 2),
                "unit": ingredient.unit,
                "grams": round(ingredient.grams / meal.servings, 1),
            }
        )
    draft = per_serving_draft(meal).model_copy(update={"recipe_id": None})
    facts = meal_facts(draft, table)
    unplain = {v.where for v in facts.problems if v.kind is ViolationKind.wording}
    foods = [
        (food, i.grams) for food, i in zip(facts.foods, draft.ingredients, strict=True) if food
    ]
    plain = "Cook the ingredients and combine them."
    return {
        "slot": meal.slot.value,
        "title": title_from(foods) if "the title" in unplain else meal.title,
        "description": description_from(foods)
        if "the description" in unplain
        else meal.description,
        "cuisine": meal.cuisine or "",
        "main_protein": "none" if "the main protein" in unplain else (meal.main_protein or "none"),
        "ingredients": ingredients,
        "steps": [
            plain if f"step {n}" in unplain else step for n, step in enumerate(meal.steps, start=1)
        ],
        "prep_minutes": meal.prep_minutes,
        "cook_minutes": meal.cook_minutes,
        "tags": [t for t in meal.tags if t and t not in facts.bad_tags],
    }
