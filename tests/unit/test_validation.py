"""The validator: nutrition from the table, allergens, exclusions, diets, days and variety."""

from __future__ import annotations

from typing import Any

import pytest

from mealplan_cli.mealplans.generation.drafts import DraftIngredient
from mealplan_cli.mealplans.generation.foods import default_table
from mealplan_cli.mealplans.generation.meal_facts import Violation, ViolationKind
from mealplan_cli.mealplans.generation.portions import scale_draft
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator
from tests.helpers.plans import _plan_days, checked, draft, ingredient, salmon_bowl


def validator(**request: Any) -> PlanValidator:
    return PlanValidator(parse_request(request))


def refused(result: CheckedMeal | list[Violation]) -> list[Violation]:
    assert isinstance(result, list), "the meal should have been refused"
    return result


def test_nutrition_is_recomputed_from_the_table_ignoring_the_planners_sums() -> None:
    table = default_table()
    lying = draft(
        "Salmon Quinoa Bowl",
        ingredient("salmon fillet", 150, kcal=50, protein=5, carbs=0, fat=1),
        ingredient("quinoa, cooked", 200, kcal=20, protein=1, carbs=3, fat=0),
    )
    meal = checked(validator().check(lying)).meal
    expected = table.get("salmon fillet").nutrition_for(150) + table.get(
        "quinoa, cooked"
    ).nutrition_for(200)
    assert meal.nutrition.kcal == pytest.approx(expected.kcal, abs=0.5)
    assert meal.nutrition.protein == pytest.approx(expected.protein, abs=0.05)


@pytest.mark.parametrize(
    ("name", "figures"),
    [
        ("yuzu kosho", {"kcal": 9, "protein": 0.5, "carbs": 1, "fat": 0.3}),
        ("protein bar", {"kcal": 20, "protein": 2, "carbs": 2, "fat": 0.2}),
        ("dragon spice", {}),
    ],
)
def test_an_ingredient_the_table_does_not_know_is_refused_whatever_its_figures(
    name: str, figures: dict[str, float]
) -> None:
    meal = salmon_bowl()
    meal.ingredients.append(ingredient(name, 200, **figures))
    violations = refused(validator().check(meal))
    assert [v.kind for v in violations] == [ViolationKind.unresolved]
    assert name in str(violations[0])


def test_a_food_id_the_table_does_not_have_is_refused() -> None:
    meal = salmon_bowl()
    meal.ingredients[0] = meal.ingredients[0].model_copy(update={"food_id": "unicorn_steak"})
    assert "unknown food id" in str(refused(validator().check(meal))[0])


def test_nutrition_comes_from_the_food_id_not_the_display_name() -> None:
    meal = salmon_bowl()
    meal.ingredients[0] = DraftIngredient(
        name="Grandma's pan-seared fish",
        quantity=150,
        unit="g",
        grams=150,
        food_id="salmon_fillet",
        kcal=1,
    )
    result = checked(validator().check(meal))
    assert result.meal.ingredients[0].food_id == "salmon_fillet"
    assert result.meal.nutrition.kcal == pytest.approx(
        checked(validator().check(salmon_bowl())).meal.nutrition.kcal, abs=0.5
    )


@pytest.mark.parametrize(
    ("allergy", "ingredient_name"),
    [
        ("sesame", "toasted sesame oil"),
        ("tree_nuts", "almond milk"),
        ("fish", "worcestershire sauce"),
        ("gluten", "soy sauce"),
        ("eggs", "mayonnaise"),
        ("milk", "basil pesto"),
    ],
)
def test_allergens_are_found_in_derived_foods(allergy: str, ingredient_name: str) -> None:
    meal = salmon_bowl()
    meal.ingredients.append(ingredient(ingredient_name, 10, kcal=50, protein=1, carbs=2, fat=4))
    violations = refused(validator(allergies=[allergy]).check(meal))
    assert any(v.kind is ViolationKind.allergy for v in violations)


def test_exclusions_match_words_families_and_table_aliases() -> None:
    meal = salmon_bowl()
    assert refused(validator(exclude=["broccoli"]).check(meal))[0].kind is ViolationKind.exclusion
    assert refused(validator(exclude=["fish"]).check(meal))
    assert refused(validator(exclude=["quinoa"]).check(meal))
    checked(validator(exclude=["mushrooms", "pork"]).check(meal))


@pytest.mark.parametrize(
    ("diet", "offender"),
    [
        ("vegetarian", "salmon fillet"),
        ("vegan", "salmon fillet"),
        ("paleo", "quinoa, cooked"),
        ("keto", "quinoa, cooked"),
    ],
)
def test_diets_are_decided_from_ingredients(diet: str, offender: str) -> None:
    violations = refused(validator(diet=[diet]).check(salmon_bowl()))
    assert any(offender in str(v) for v in violations if v.kind is ViolationKind.diet)


def test_pescatarian_and_gluten_free_accept_the_salmon_bowl() -> None:
    meal = checked(validator(diet=["pescatarian", "gluten_free"]).check(salmon_bowl())).meal
    assert "gluten_free" in meal.tags
    assert "vegan" not in meal.tags


def test_keto_counts_net_carbs() -> None:
    low_carb = draft(
        "Salmon with Spinach",
        ingredient("salmon fillet", 180),
        ingredient("spinach", 100),
        ingredient("olive oil", 15),
    )
    checked(validator(diet=["keto"]).check(low_carb))
    sweet = low_carb.model_copy(deep=True)
    sweet.ingredients.append(ingredient("banana", 150))
    reasons = [str(v) for v in refused(validator(diet=["keto"]).check(sweet))]
    assert any("net carbs" in r for r in reasons)


def test_cooking_time_and_requested_slots_are_enforced() -> None:
    assert refused(validator(max_cook_minutes=20).check(salmon_bowl()))[0].kind is (
        ViolationKind.time
    )
    assert refused(validator(meals="breakfast").check(salmon_bowl()))[0].kind is (
        ViolationKind.structure
    )


def test_household_size_scales_amounts_not_per_serving_nutrition() -> None:
    single = checked(validator().check(salmon_bowl())).meal
    family = checked(validator(household_size=4).check(salmon_bowl())).meal
    assert family.servings == 4
    assert family.ingredients[0].grams == 4 * single.ingredients[0].grams
    assert family.nutrition == single.nutrition


def _day_of(v: PlanValidator, kcal_factor: float) -> list[CheckedMeal]:
    return [checked(v.check(scale_draft(salmon_bowl(), kcal_factor)))]


def test_a_day_within_5_percent_is_left_alone() -> None:
    v = validator(meals="dinner", calories=2000)
    kcal = checked(v.check(salmon_bowl())).meal.nutrition.kcal
    fit = v.fit_day(1, _day_of(v, 2000 / kcal * 1.03))
    assert not isinstance(fit, list)
    assert fit.scaled == []


@pytest.mark.parametrize("ratio", [0.76, 0.9, 1.2, 1.32])
def test_a_day_off_by_a_modest_factor_is_scaled_onto_the_target(ratio: float) -> None:
    v = validator(meals="dinner", calories=2000)
    kcal = checked(v.check(salmon_bowl())).meal.nutrition.kcal
    fit = v.fit_day(1, _day_of(v, 2000 / kcal * ratio))
    assert not isinstance(fit, list)
    assert len(fit.scaled) == 1
    total = sum(m.meal.nutrition.kcal for m in fit.meals)
    assert abs(total - 2000) <= 0.05 * 2000


@pytest.mark.parametrize("ratio", [0.6, 1.5])
def test_a_day_far_off_is_rejected(ratio: float) -> None:
    v = validator(meals="dinner", calories=2000)
    kcal = checked(v.check(salmon_bowl())).meal.nutrition.kcal
    fit = v.fit_day(1, _day_of(v, 2000 / kcal * ratio))
    assert isinstance(fit, list)
    assert "beyond what scaling portions may fix" in str(fit[0])


def test_plan_violations_catch_repeated_recipes_and_protein_runs() -> None:
    request = parse_request({"days": 3, "meals": "dinner"})
    v = PlanValidator(request)
    good = _plan_days(request, [("A", "salmon"), ("B", "salmon"), ("C", "cod")])
    assert v.plan_violations(good) == []
    repeated = _plan_days(request, [("A", "salmon"), ("B", "cod"), ("a", "tofu")])
    assert any("repeats day 1" in p for p in v.plan_violations(repeated))
    run = _plan_days(request, [("A", "salmon"), ("B", "salmon"), ("C", "Salmon")])
    assert any("salmon is the main protein on days 1-3" in p for p in v.plan_violations(run))


def test_plan_violations_catch_wrong_day_count_and_energy() -> None:
    request = parse_request({"days": 2, "meals": "dinner"})
    v = PlanValidator(request)
    days = _plan_days(request, [("A", "salmon")])
    assert any("1 days, 2 were requested" in p for p in v.plan_violations(days))
    days[0].meals[0].nutrition.kcal = 1000
    assert any("target 2000" in p for p in v.plan_violations(days))
