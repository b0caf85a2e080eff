"""Days saved by an earlier attempt at the same plan, taken back only if they still pass.

A job retried for any reason (a rate limit, a crash, a lost lease) used to write every day
again, and pay for it. The saved days come from the database, so they are checked as if a
planner had just proposed them: each meal through the validator, each day fitted to its
target again. A day that fails any check (the rules changed since, the row was edited) is
simply written again; nothing unchecked reaches the plan.
"""

from __future__ import annotations

from collections.abc import Iterable

from mealplan_cli.mealplans.generation.models import Day
from mealplan_cli.mealplans.generation.portions import per_serving_draft
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator


def recheck_days(validator: PlanValidator, saved: Iterable[Day]) -> dict[int, list[CheckedMeal]]:
    """The saved days that pass today's checks, by day number; the others are left out."""
    request = validator.request
    kept: dict[int, list[CheckedMeal]] = {}
    for day in saved:
        if not 1 <= day.day <= request.days or [m.slot for m in day.meals] != request.meals:
            continue
        checked: list[CheckedMeal] = []
        for meal in day.meals:
            outcome = validator.check(per_serving_draft(meal))
            if isinstance(outcome, list):
                break
            checked.append(outcome)
        else:
            fit = validator.fit_day(day.day, checked)
            if not isinstance(fit, list):
                kept[day.day] = fit.meals
    return kept
