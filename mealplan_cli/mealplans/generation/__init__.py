"""The meal-plan generation library: request in, validated plan out.

Everything a command or the worker needs is re-exported here; the library imports nothing from
the CLI or the queue. The names load on first use, so that importing a light submodule
(``generation.vocabulary`` for ``--help``) does not load pydantic, the planners or httpx.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mealplan_cli.mealplans.generation.models import MealPlan as MealPlan
    from mealplan_cli.mealplans.generation.pipeline import generate_meal_plan as generate_meal_plan
    from mealplan_cli.mealplans.generation.planner import Progress as Progress
    from mealplan_cli.mealplans.generation.planner import ProgressCallback as ProgressCallback
    from mealplan_cli.mealplans.generation.request import MealPlanRequest as MealPlanRequest
    from mealplan_cli.mealplans.generation.services import GenerationServices as GenerationServices
    from mealplan_cli.mealplans.generation.services import (
        generation_services as generation_services,
    )

_HOMES = {
    "GenerationServices": "services",
    "MealPlan": "models",
    "MealPlanRequest": "request",
    "Progress": "planner",
    "ProgressCallback": "planner",
    "generate_meal_plan": "pipeline",
    "generation_services": "services",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)
