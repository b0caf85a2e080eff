"""The meal-plan generation library: request in, validated plan out.

Everything a command or the worker needs is re-exported here; the library imports nothing from
the CLI or the queue.
"""

from mealplan_cli.generation.models import MealPlan, MealPlanRequest
from mealplan_cli.generation.pipeline import generate_meal_plan
from mealplan_cli.generation.planner import Progress, ProgressCallback
from mealplan_cli.generation.services import GenerationServices, generation_services

__all__ = [
    "GenerationServices",
    "MealPlan",
    "MealPlanRequest",
    "Progress",
    "ProgressCallback",
    "generate_meal_plan",
    "generation_services",
]
