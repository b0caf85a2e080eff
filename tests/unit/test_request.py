"""The request: bounds, defaults, forgiving input forms, and errors that name their field."""

from __future__ import annotations

import pytest

from mealplan_cli.mealplans.generation.request import MacroSplit, MealPlanRequest, parse_request
from mealplan_cli.mealplans.generation.vocabulary import Allergen, Diet, Slot
from mealplan_cli.ops.errors import InvalidRequestError


def test_defaults_are_a_week_of_three_meals_at_2000_kcal() -> None:
    request = parse_request({})
    assert request.days == 7
    assert request.meals == [Slot.breakfast, Slot.lunch, Slot.dinner]
    assert request.calories == 2000
    assert request.diet == [Diet.omnivore]
    assert request.household_size == 1


def test_lists_accept_comma_separated_text_and_aliases() -> None:
    request = parse_request(
        {
            "meals": "dinner, breakfast",
            "diet": "Vegan,gluten-free",
            "allergies": "tree_nuts, sesame, soy, dairy",
            "exclude": "Mushrooms, mushrooms, olives",
        }
    )
    assert request.meals == [Slot.breakfast, Slot.dinner]
    assert request.diet == [Diet.vegan, Diet.gluten_free]
    assert request.allergies == [
        Allergen.tree_nuts,
        Allergen.sesame,
        Allergen.soybeans,
        Allergen.milk,
    ]
    assert request.exclude == ["mushrooms", "olives"]


def test_omnivore_gives_way_to_a_specific_diet() -> None:
    assert parse_request({"diet": ["omnivore", "keto"]}).diet == [Diet.keto]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"days": 0}, "days"),
        ({"days": 15}, "days"),
        ({"calories": 1199}, "calories"),
        ({"calories": 5001}, "calories"),
        ({"meals": []}, "meals"),
        ({"meals": "brunch"}, "meals"),
        ({"diet": "carnivore"}, "diet"),
        ({"allergies": "pollen"}, "allergies"),
        ({"exclude": ["x" * 41]}, "exclude"),
        ({"exclude": [f"item{i}" for i in range(31)]}, "exclude"),
        ({"cuisines": [f"c{i}" for i in range(11)]}, "cuisines"),
        ({"household_size": 13}, "household_size"),
        ({"max_cook_minutes": 2}, "max_cook_minutes"),
        ({"notes": "n" * 501}, "notes"),
        ({"macros": {"protein": 30, "carbs": 40, "fat": 40}}, "macros"),
        ({"calorie": 2000}, "calorie"),
    ],
)
def test_every_bound_is_enforced_and_named(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(data)
    assert f"{field}" in str(caught.value)
    assert str(caught.value).startswith("invalid meal-plan request: ")


def test_a_request_must_be_an_object() -> None:
    with pytest.raises(InvalidRequestError, match="JSON object"):
        parse_request(["days", 7])


def test_macro_split_parses_and_must_sum_to_100() -> None:
    assert MacroSplit.parse("30/40/30") == MacroSplit(protein=30, carbs=40, fat=30)
    with pytest.raises(ValueError, match="sum to 100"):
        MacroSplit.parse("30/40/40")
    with pytest.raises(ValueError, match="three whole percentages"):
        MacroSplit.parse("high protein")


def test_requests_are_immutable() -> None:
    request = MealPlanRequest()
    with pytest.raises(ValueError, match="frozen"):
        request.days = 3  # type: ignore[misc]
