"""Days saved by an earlier attempt, read back through today's checks (``generation.resume``)."""

from __future__ import annotations

import asyncio

from mealplan_cli.mealplans.generation import generate_meal_plan
from mealplan_cli.mealplans.generation.foods import default_table
from mealplan_cli.mealplans.generation.ingredient_names import Qualifier, render_name
from mealplan_cli.mealplans.generation.planner_catalog import CatalogPlanner
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.resume import recheck_days
from mealplan_cli.mealplans.generation.validation import PlanValidator


def test_a_saved_ingredient_keeps_its_preparation_when_the_plan_resumes() -> None:
    """A resumed day is the saved day: "red onion, diced" must not come back as "red onion"."""
    request = parse_request({"days": 1})
    plan = asyncio.run(generate_meal_plan(request, planner=CatalogPlanner(seed=1)))
    day = plan.days[0]
    meal = day.meals[0]
    first = meal.ingredients[0]
    assert first.food_id is not None
    food = default_table().by_id(first.food_id)
    assert food is not None
    diced = first.model_copy(
        update={"qualifier": Qualifier.diced.value, "name": render_name(food, Qualifier.diced)}
    )
    edited = meal.model_copy(update={"ingredients": [diced, *meal.ingredients[1:]]})
    saved = day.model_copy(update={"meals": [edited, *day.meals[1:]]})

    kept = recheck_days(PlanValidator(request), [saved])

    assert list(kept) == [1]
    resumed = kept[1][0].meal.ingredients[0]
    assert (resumed.qualifier, resumed.name) == (Qualifier.diced.value, diced.name)
