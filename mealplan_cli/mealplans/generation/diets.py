"""Diet rules, decided from the ingredients' diet flags and the meal's macronutrients."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mealplan_cli.mealplans.generation.foods import Food
from mealplan_cli.mealplans.generation.models import Nutrition
from mealplan_cli.mealplans.generation.vocabulary import Allergen, Diet


@dataclass(frozen=True)
class FlaggedIngredient:
    """An ingredient with what the food table says it contains."""

    name: str
    flags: frozenset[str]
    allergens: frozenset[Allergen]
    food: Food | None = None


KETO_MAX_NET_CARB_ENERGY = 0.10
"""Keto: net carbohydrate (carbs minus fibre) may supply at most this share of a meal's energy."""

_FORBIDDEN_FLAGS: dict[Diet, frozenset[str]] = {
    Diet.omnivore: frozenset(),
    Diet.vegetarian: frozenset({"meat", "poultry", "fish", "shellfish", "rennet"}),
    Diet.vegan: frozenset(
        {"meat", "poultry", "fish", "shellfish", "dairy", "egg", "honey", "rennet"}
    ),
    Diet.pescatarian: frozenset({"meat", "poultry"}),
    Diet.keto: frozenset({"grain", "added_sugar", "starchy"}),
    Diet.paleo: frozenset({"grain", "legume", "dairy", "added_sugar", "processed"}),
    Diet.mediterranean: frozenset({"meat", "processed"}),
    Diet.gluten_free: frozenset(),
    Diet.dairy_free: frozenset({"dairy"}),
}

_FORBIDDEN_ALLERGENS: dict[Diet, frozenset[Allergen]] = {
    Diet.gluten_free: frozenset({Allergen.gluten}),
    Diet.dairy_free: frozenset({Allergen.milk}),
    Diet.vegan: frozenset({Allergen.milk, Allergen.eggs}),
}


def _keto_carbs(nutrition: Nutrition) -> str | None:
    if nutrition.kcal <= 0:
        return None
    share = max(nutrition.carbs - nutrition.fiber, 0.0) * 4 / nutrition.kcal
    if share > KETO_MAX_NET_CARB_ENERGY:
        return (
            f"net carbs supply {share:.0%} of its energy, keto allows "
            f"{KETO_MAX_NET_CARB_ENERGY:.0%}"
        )
    return None


_MACRO_RULES: dict[Diet, Callable[[Nutrition], str | None]] = {Diet.keto: _keto_carbs}


def diet_violations(
    diet: Diet,
    ingredients: Sequence[FlaggedIngredient],
    nutrition: Nutrition,
    *,
    macros: bool = True,
) -> list[str]:
    """Why a meal breaks ``diet`` (empty when it keeps it); ``macros=False`` judges foods
    alone (a single food cannot break keto's share of carbohydrate energy by itself)."""
    reasons = []
    forbidden = _FORBIDDEN_FLAGS[diet]
    forbidden_allergens = _FORBIDDEN_ALLERGENS.get(diet, frozenset())
    for ingredient in ingredients:
        bad_flags = ingredient.flags & forbidden
        bad_allergens = ingredient.allergens & forbidden_allergens
        if bad_flags or bad_allergens:
            hits = sorted(bad_flags) + sorted(a.value for a in bad_allergens)
            reasons.append(f"{ingredient.name} ({', '.join(hits)}) is not {diet.value}")
    rule = _MACRO_RULES.get(diet) if macros else None
    verdict = rule(nutrition) if rule else None
    if verdict:
        reasons.append(f"not {diet.value}: {verdict}")
    return reasons
