"""The nutrition table and the deterministic reading of ingredient names."""

from __future__ import annotations

import pytest

from mealplan_cli.mealplans.generation.foods import AISLES, DIET_FLAGS, default_table, lookup_key
from mealplan_cli.mealplans.generation.vocabulary import Allergen

A = Allergen

ATWATER_TOLERANCE = 0.15
"""A food whose stated energy is more than this far off 4P + 4C + 9F is suspect (APIS.md)."""


def passes_atwater(kcal: float, protein: float, carbs: float, fat: float) -> bool:
    """Whether ``kcal`` agrees with the energy the macronutrients imply; below 15 kcal a
    relative tolerance means nothing (a pinch of spice), so compare absolutely."""
    expected = 4 * protein + 4 * carbs + 9 * fat
    if max(kcal, expected) < 15:
        return abs(kcal - expected) < 15
    return abs(kcal - expected) <= ATWATER_TOLERANCE * max(kcal, expected)


def test_the_table_has_at_least_200_well_formed_entries() -> None:
    table = default_table()
    assert len(table) >= 200
    names = [food.name for food in table.foods]
    assert len(names) == len(set(names)), "duplicate names"
    for food in table.foods:
        assert food.name == food.name.lower()
        assert food.aisle in AISLES
        assert food.flags <= DIET_FLAGS


def test_names_and_aliases_never_collide() -> None:
    owner: dict[str, str] = {}
    for food in default_table().foods:
        for label in (food.name, *food.aliases):
            key = lookup_key(label)
            assert owner.setdefault(key, food.name) == food.name, (
                f"{label!r} of {food.name!r} reads like {owner[key]!r}"
            )


def test_every_entry_passes_the_energy_check() -> None:
    suspect = []
    for food in default_table().foods:
        n = food.per_100g
        if "alcohol" in food.flags or n.kcal < 40:
            continue
        if not passes_atwater(n.kcal, n.protein, n.carbs, n.fat):
            suspect.append(food.name)
    assert suspect == []


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("Chickpeas, cooked", "chickpeas, cooked"),
        ("cooked chickpeas", "chickpeas, cooked"),
        ("2 large eggs", None),
        ("finely chopped red onions", "red onion"),
        ("extra virgin olive oil", "olive oil"),
    ],
)
def test_lookup_forgives_order_plurals_and_preparation(spelling: str, name: str | None) -> None:
    found = default_table().lookup(spelling)
    assert (found.name if found else None) == name


@pytest.mark.parametrize(
    ("ingredient", "allergens"),
    [
        ("tahini", {A.sesame}),
        ("toasted sesame oil", {A.sesame}),
        ("soy sauce", {A.soybeans, A.gluten}),
        ("tamari", {A.soybeans}),
        ("almond milk", {A.tree_nuts}),
        ("basil pesto", {A.tree_nuts, A.milk}),
        ("mayonnaise", {A.eggs}),
        ("worcestershire sauce", {A.fish}),
        ("tiger prawns", {A.crustaceans}),
        ("grated parmesan", {A.milk}),
        ("shrimp paste", {A.crustaceans}),
        ("smoked paprika", set()),
        ("butternut squash", set()),
        ("coconut milk", set()),
        ("nutmeg", set()),
        ("eggplant", set()),
        ("peanut butter", {A.peanuts}),
        ("vegan mayo", {A.soybeans}),
        ("gluten-free spaghetti", set()),
        ("dairy-free cheese shreds", {A.tree_nuts, A.soybeans}),
        ("cashew cream", {A.tree_nuts}),
        ("celery stalks", {A.celery}),
        ("dijon mustard", {A.mustard}),
        ("dry white wine", {A.sulphites}),
    ],
)
def test_classification_finds_allergens_in_derived_and_unknown_foods(
    ingredient: str, allergens: set[Allergen]
) -> None:
    found = set(default_table().classify(ingredient).allergens)
    if allergens:
        assert allergens <= found
    else:
        assert found == set(), f"false alarm for {ingredient}"


@pytest.mark.parametrize(
    ("ingredient", "flag"),
    [
        ("chicken thighs", "poultry"),
        ("streaky bacon", "processed"),
        ("lamb mince", "meat"),
        ("unflavoured gelatin", "meat"),
        ("wildflower honey", "honey"),
        ("greek yogurt", "dairy"),
        ("red lentils", "legume"),
        ("basmati rice", "grain"),
        ("maple syrup", "added_sugar"),
        ("anchovy fillets", "fish"),
    ],
)
def test_classification_sets_diet_flags(ingredient: str, flag: str) -> None:
    assert flag in default_table().classify(ingredient).flags


def test_every_entry_declares_what_its_own_names_imply() -> None:
    """The table and the lexicon agree: an entry called "bagel" carries sesame because the
    lexicon reads sesame into "bagel" (fail closed), so text and ingredient never disagree."""
    table = default_table()
    disagreements = []
    for food in table.foods:
        for label in (food.name, *food.aliases):
            for hit in table.scan(label):
                missing = sorted(hit.allergens - food.allergens) + sorted(hit.flags - food.flags)
                if missing:
                    disagreements.append(f"{food.name} ({label!r}): {missing}")
    assert disagreements == []


def test_food_ids_are_unique_and_stable() -> None:
    table = default_table()
    assert len({food.id for food in table.foods}) == len(table)
    assert table.get("greek yogurt, nonfat").id == "greek_yogurt_nonfat"
    assert table.by_id("2pct_milk") is table.get("2% milk")


def test_foods_that_often_carry_an_allergen_are_flagged_may_contain() -> None:
    """Issue 23: miso is often made with barley, tamari with some wheat, oats are grown and
    milled beside wheat; a label-less table entry must assume so."""
    table = default_table()
    for name in ("miso paste", "tamari", "rolled oats", "oat milk", "buckwheat flour"):
        food = table.get(name)
        assert A.gluten in food.may_contain, name
        assert A.gluten in food.allergens, name  # every check keeps it away
    for name in ("gluten-free tamari", "gluten-free oats"):
        assert A.gluten not in table.get(name).allergens, name
    assert table.lookup("gluten-free soy sauce") == table.get("gluten-free tamari")


def test_a_gluten_allergy_keeps_may_contain_foods_out_and_the_safe_variety_in() -> None:
    from mealplan_cli.mealplans.generation.request import parse_request
    from mealplan_cli.mealplans.generation.validation import PlanValidator

    table = default_table()
    validator = PlanValidator(parse_request({"allergies": "gluten"}), table)
    for name in ("miso paste", "tamari", "rolled oats", "buckwheat flour"):
        assert not validator.allows(table.get(name)), name
    for name in ("gluten-free tamari", "gluten-free oats"):
        assert validator.allows(table.get(name)), name


def test_prepared_foods_contain_table_foods_and_carry_their_allergens() -> None:
    table = default_table()
    salsa, pesto = table.get("salsa"), table.get("pesto")
    assert "onion" in salsa.components
    assert {"garlic", "pine nuts", "parmesan"} <= pesto.components
    caesar = table.get("caesar dressing")
    assert "anchovies" in caesar.components  # through its worcestershire sauce
    for food in table.foods:
        for part in food.components:
            assert table.get(part).allergens <= food.allergens, (food.name, part)


def test_a_food_that_contains_an_unknown_food_is_refused() -> None:
    from dataclasses import replace

    from mealplan_cli.mealplans.generation.foods import FoodTable

    salsa = replace(default_table().get("salsa"), contains=("dragon pepper",))
    with pytest.raises(ValueError, match="unknown food 'dragon pepper'"):
        FoodTable([salsa])


def test_relatives_of_an_excluded_food_are_kept_and_named_with_what_holds_them() -> None:
    from mealplan_cli.mealplans.generation.exclusions import exclusions_for

    table = default_table()
    (onion,) = exclusions_for(["onion"], table).report(table)
    assert {"onion", "red onion", "green onion", "onion powder"} == set(onion.left_out)
    assert {"salsa", "ketchup", "vegetable broth"} <= set(onion.left_out_prepared)
    assert onion.relatives_kept[:3] == ["shallot", "leek", "chives"]
    assert "green curry paste (shallot)" in onion.relatives_kept
