"""The bundled catalogue: well-formed, consistent with the table, and broad enough."""

from __future__ import annotations

from collections import Counter

import pytest

from mealplan_cli.mealplans.generation.catalog import CUISINES, default_catalog
from mealplan_cli.mealplans.generation.foods import default_table, lookup_key
from mealplan_cli.mealplans.generation.meal_facts import meal_facts
from mealplan_cli.mealplans.generation.models import Nutrition
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.validation import PlanValidator
from mealplan_cli.mealplans.generation.vocabulary import Allergen, Slot

KCAL_PER_SERVING = {
    Slot.breakfast: (350, 550),
    Slot.lunch: (450, 750),
    Slot.dinner: (450, 750),
    Slot.snack: (150, 300),
}


def test_the_catalogue_has_at_least_150_recipes_with_unique_ids_and_titles() -> None:
    recipes = default_catalog()
    assert len(recipes) >= 150
    ids = Counter(r.id for r in recipes)
    titles = Counter(lookup_key(r.title) for r in recipes)
    assert [i for i, n in ids.items() if n > 1] == []
    assert [t for t, n in titles.items() if n > 1] == []


def test_every_recipe_names_table_foods_and_known_cuisines() -> None:
    table = default_table()
    unknown = sorted(
        f"{r.id}: {i.name}"
        for r in default_catalog()
        for i in r.ingredients
        if i.name not in {f.name for f in table.foods}
    )
    assert unknown == []
    assert {r.cuisine for r in default_catalog()} <= set(CUISINES)


def test_servings_are_sized_for_their_slot() -> None:
    table = default_table()
    off = []
    for recipe in default_catalog():
        total = Nutrition()
        for ingredient in recipe.ingredients:
            total = total + table.get(ingredient.name).nutrition_for(ingredient.grams)
        low = min(KCAL_PER_SERVING[s][0] for s in recipe.slots)
        high = max(KCAL_PER_SERVING[s][1] for s in recipe.slots)
        if not low * 0.9 <= total.kcal <= high * 1.1:
            off.append(f"{recipe.id}: {total.kcal:.0f} kcal")
    assert off == []


def options_per_slot(**request: object) -> dict[Slot, int]:
    validator = PlanValidator(parse_request({"meals": "breakfast,lunch,dinner,snack", **request}))
    counts: Counter[Slot] = Counter()
    for recipe in default_catalog():
        for slot in recipe.slots:
            if not isinstance(validator.check(recipe.draft(slot)), list):
                counts[slot] += 1
    return {slot: counts[slot] for slot in Slot}


def test_at_least_7_options_per_slot_for_vegan_gluten_free_tree_nut_free() -> None:
    counts = options_per_slot(diet="vegan,gluten_free", allergies="tree_nuts")
    assert min(counts.values()) >= 7, counts


@pytest.mark.parametrize(
    "request_fields",
    [
        {"diet": "omnivore"},
        {"diet": "vegetarian"},
        {"diet": "vegan"},
        {"diet": "pescatarian"},
        {"diet": "keto"},
        {"diet": "paleo"},
        {"diet": "mediterranean"},
        {"diet": "gluten_free"},
        {"diet": "dairy_free"},
        {"diet": "vegan", "allergies": "tree_nuts,sesame"},
        {"diet": "vegan,gluten_free", "allergies": "tree_nuts"},
        {"allergies": "peanuts,tree_nuts"},
        {"allergies": "milk,eggs"},
        {"allergies": "gluten,soybeans"},
        {"allergies": "fish,crustaceans,molluscs"},
    ],
    ids=lambda fields: "+".join(str(v) for v in fields.values()),
)
def test_common_requests_have_a_week_of_options(request_fields: dict[str, str]) -> None:
    counts = options_per_slot(**request_fields)
    assert min(counts.values()) >= 7, counts


def test_every_recipes_text_agrees_with_its_ingredients() -> None:
    """A title, description or step may mention only what the ingredients contain: the
    breakfast "tempered with mustard seeds" must list mustard seeds, or a mustard-allergic
    request would be served mustard the validator never saw."""
    table = default_table()
    disagreements = []
    for recipe in default_catalog():
        facts = meal_facts(recipe.draft(recipe.slots[0]), table)
        count = len(recipe.ingredients)
        allergens: set[Allergen] = set()
        flags: set[str] = set()
        for ingredient in facts.ingredients[:count]:
            allergens |= ingredient.allergens
            flags |= ingredient.flags
        for mention in facts.ingredients[count:]:
            extra = sorted(a.value for a in mention.allergens - allergens)
            extra += sorted(mention.flags - flags)
            if extra:
                disagreements.append(f"{recipe.id}: {mention.name} implies {extra}")
        assert not facts.problems, (recipe.id, facts.problems)
    assert disagreements == []


def test_the_mustard_seed_breakfast_lists_its_mustard_seeds() -> None:
    upma = next(r for r in default_catalog() if r.id == "savory-oats-upma-vegetables")
    assert "mustard seeds" in [i.name for i in upma.ingredients]
    request = parse_request({"allergies": ["mustard"], "meals": ["breakfast"]})
    assert isinstance(PlanValidator(request).check(upma.draft(upma.slots[0])), list)
