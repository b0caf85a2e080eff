"""What the OpenAI planner checks between its calls, before the plan-wide validator.

Each meal's verdict (a refusal recorded with its reasons, to be sent back in the next prompt),
titles repeated within a day by meals written apart, and across days the repeats and protein
runs that decide which days to write again.

A meal refused only for words of its title or description that nothing vouches for (a dish
name, an abbreviation) is not asked for again: the title and description are written from its
ingredients instead (``ingredient_names.title_from``), and the refusal is recorded. Steps, the
main protein and the cuisine cannot be written that way, so those are asked for again.
"""

from __future__ import annotations

from mealplan_cli.mealplans.generation.drafts import DraftMeal
from mealplan_cli.mealplans.generation.foods import FoodTable, lookup_key
from mealplan_cli.mealplans.generation.ingredient_names import description_from, title_from
from mealplan_cli.mealplans.generation.meal_facts import Violation, ViolationKind, resolve
from mealplan_cli.mealplans.generation.models import RejectedMeal
from mealplan_cli.mealplans.generation.planner_schema import LlmMeal
from mealplan_cli.mealplans.generation.proteins import protein_key
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator
from mealplan_cli.mealplans.generation.vocabulary import Slot
from mealplan_cli.ops.errors import PlanRejectedError

REGENERATIONS = 2
"""A day the validator refuses is asked for again at most this many times."""


def check_meal(
    validator: PlanValidator, day: int, meal: LlmMeal, rejected: list[RejectedMeal]
) -> CheckedMeal | list[str]:
    """The validator's verdict on one meal; a refusal is recorded and returned as reasons."""
    draft = meal.draft()
    outcome = validator.check(draft)
    if not isinstance(outcome, list):
        return outcome
    reasons = [str(v) for v in outcome]
    if _only_titles(outcome):
        retitled = validator.check(written_from_foods(draft, validator.table))
        if not isinstance(retitled, list):
            reasons.append(f"written from its ingredients instead: {retitled.meal.title!r}")
            rejected.append(
                RejectedMeal(day=day, slot=meal.slot, title=meal.title, reasons=reasons)
            )
            return retitled
    rejected.append(RejectedMeal(day=day, slot=meal.slot, title=meal.title, reasons=reasons))
    return [f"{meal.slot.value} {meal.title!r}: {r}" for r in reasons]


_TITLE_TEXTS = frozenset({"the title", "the description"})


def _only_titles(violations: list[Violation]) -> bool:
    return all(v.kind is ViolationKind.wording and v.where in _TITLE_TEXTS for v in violations)


def written_from_foods(draft: DraftMeal, table: FoodTable) -> DraftMeal:
    """``draft`` with its title and description written from its own foods."""
    foods = [
        (food, ingredient.grams)
        for ingredient in draft.ingredients
        if not isinstance(food := resolve(ingredient, table), str)
    ]
    return draft.model_copy(
        update={"title": title_from(foods), "description": description_from(foods)}
    )


def day_failed(day: int, problems: list[str]) -> PlanRejectedError:
    """The error for a day still refused after every regeneration."""
    return PlanRejectedError(
        f"day {day} failed validation {REGENERATIONS + 1} times: " + "; ".join(problems[:3]),
        problems,
    )


def drop_repeats(
    slots: list[Slot], meals: dict[Slot, CheckedMeal], problems: dict[Slot, list[str]]
) -> None:
    """Meals written apart may share a title: the later slot's is dropped, to be asked again."""
    seen: dict[str, Slot] = {}
    for slot in slots:
        if slot not in meals:
            continue
        key = lookup_key(meals[slot].meal.title)
        if key in seen:
            title = meals.pop(slot).meal.title
            problems[slot] = [
                f"{title!r} is already the {seen[key].value} of this day: write a different meal"
            ]
        else:
            seen[key] = slot


def variety_clashes(days: dict[int, list[CheckedMeal]]) -> dict[int, list[str]]:
    """Per day to rewrite, why: a title used earlier, or a protein on a third day running."""
    clashes: dict[int, list[str]] = {}
    seen: dict[str, int] = {}
    ordered = sorted(days)
    proteins: dict[int, set[str]] = {}
    for day in ordered:
        proteins[day] = {p for c in days[day] if (p := protein_key(c.meal.main_protein))}
        for checked in days[day]:
            key = lookup_key(checked.meal.title)
            if key in seen:
                clashes.setdefault(day, []).append(
                    f"{checked.meal.title!r} is already served on day {seen[key]}"
                )
            seen.setdefault(key, day)
    for day in ordered:
        if day - 1 in proteins and day - 2 in proteins:
            for protein in sorted(proteins[day] & proteins[day - 1] & proteins[day - 2]):
                clashes.setdefault(day, []).append(
                    f"{protein} is the main protein on days {day - 2}, {day - 1} and {day}: "
                    "choose another"
                )
    return clashes
