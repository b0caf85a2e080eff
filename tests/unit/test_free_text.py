"""The name is the food: printed names come from food ids, free text is read fail-closed.

The ordinary-word list must hold no food or dish; every catalogue recipe must pass the reading;
and no word outside the vocabularies survives into a plan, whatever it is (a property test).
"""

from __future__ import annotations

import asyncio
import string
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mealplan_cli.mealplans.generation.catalog import default_catalog
from mealplan_cli.mealplans.generation.drafts import DraftIngredient, DraftMeal
from mealplan_cli.mealplans.generation.foods import _phrase, default_table, words
from mealplan_cli.mealplans.generation.free_text import (
    STAPLES,
    MealReader,
    food_words,
    ordinary_words,
    tokens,
)
from mealplan_cli.mealplans.generation.ingredient_names import Qualifier, render_name
from mealplan_cli.mealplans.generation.lexicon import LEXICON
from mealplan_cli.mealplans.generation.meal_facts import ViolationKind, meal_facts
from mealplan_cli.mealplans.generation.models import Day, Meal
from mealplan_cli.mealplans.generation.planner import no_progress
from mealplan_cli.mealplans.generation.planner_catalog import CatalogPlanner
from mealplan_cli.mealplans.generation.planner_checks import check_meal
from mealplan_cli.mealplans.generation.planner_schema import LlmMeal
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator
from mealplan_cli.mealplans.generation.vocabulary import Diet, Slot
from tests.fakes.meal_responder import meal_answer


def test_the_ordinary_words_name_no_food_no_dish_and_claim_nothing() -> None:
    table = default_table()
    single_phrases = {p for p in (_phrase(text) for text in LEXICON) if len(p) == 1}
    ordinary = ordinary_words()
    assert len(ordinary) > 800
    foods = sorted(w for w in ordinary if table.lookup(w) is not None)
    assert foods == [], "these name table foods"
    read = sorted(w for w in ordinary if (w,) in single_phrases)
    assert read == [], "the allergen lexicon reads these"
    claims = {w for d in Diet for w in words(d.value)} | {"free", "safe", "allergen"}
    claims -= {"mediterranean"}  # a cuisine as well as a diet
    assert sorted(ordinary & claims) == []
    dishes = ("pesto", "satay", "tiramisu", "sushi", "curry", "salsa", "hummus", "pb", "toast")
    for dish in (*dishes, "roll", "wrap", "crumble"):
        assert dish not in ordinary


def test_every_catalogue_recipe_passes_the_reading() -> None:
    table = default_table()
    for recipe in default_catalog():
        facts = meal_facts(recipe.draft(recipe.slots[0]), table)
        wording = [str(v) for v in facts.problems if v.kind is ViolationKind.wording]
        assert wording == [], recipe.id
        assert facts.bad_tags == (), recipe.id


def test_a_recipe_s_own_words_are_vouched_for_that_recipe_only() -> None:
    table = default_table()
    recipe = next(r for r in default_catalog() if "shakshuka" in tokens(r.title))
    draft = recipe.draft(recipe.slots[0])
    assert not [v for v in meal_facts(draft, table).problems if v.kind is ViolationKind.wording]
    as_a_model = draft.model_copy(update={"recipe_id": None})
    found = [str(v) for v in meal_facts(as_a_model, table).problems]
    assert any("'shakshuka'" in f for f in found), found


@pytest.mark.parametrize("how", list(Qualifier))
def test_every_preparation_keeps_the_printed_name_on_its_food(how: Qualifier) -> None:
    table = default_table()
    for name in ("red onion", "chickpeas, cooked", "2% milk", "almonds"):
        food = table.get(name)
        assert table.lookup(render_name(food, how)) is food


def _meal(**extra: Any) -> DraftMeal:
    values: dict[str, Any] = {
        "slot": Slot.dinner,
        "title": "Quinoa with red bell pepper and almond milk",
        "description": "Roasted peppers over quinoa.",
        "ingredients": [
            DraftIngredient(food_id="quinoa_cooked", quantity=200, unit="g", grams=200),
            DraftIngredient(food_id="red_bell_pepper", quantity=1, unit="piece", grams=120),
            DraftIngredient(food_id="almond_milk", quantity=1, unit="cup", grams=240),
            DraftIngredient(food_id="olive_oil", quantity=1, unit="tbsp", grams=14),
        ],
        "steps": ["Roast the peppers for 25 minutes.", "Season with salt and serve."],
        "prep_minutes": 10,
        "cook_minutes": 25,
        **extra,
    }
    return DraftMeal(**values)


def _wording(draft: DraftMeal) -> list[str]:
    facts = meal_facts(draft, default_table())
    return [str(v) for v in facts.problems if v.kind is ViolationKind.wording]


def test_the_plain_meal_reads_clean() -> None:
    assert _wording(_meal()) == []


@pytest.mark.parametrize(
    ("field", "text", "named"),
    [
        ("title", "Tiramisu", "'tiramisu'"),
        ("title", "PB&J Bowl", "'pb'"),
        ("description", "Like a Käsespätzle.", "'kasespatzle'"),
        ("steps", ["Serve with \u82b1\u751f."], "'\u82b1\u751f'"),
        ("steps", ["Pour over the milk."], "'milk' (whole milk)"),
        ("steps", ["Spread with peanut butter."], "'peanut'"),
        ("main_protein", "tempeh", "'tempeh'"),
    ],
)
def test_a_word_nothing_vouches_for_refuses_the_meal_by_name(
    field: str, text: Any, named: str
) -> None:
    found = _wording(_meal(**{field: text}))
    assert any(named in f for f in found), found


def test_a_meal_food_called_by_part_of_its_name_reads_as_that_food() -> None:
    reader = MealReader(default_table(), [default_table().get("cherry tomatoes")])
    assert reader.unknown("step 1", "Halve the tomatoes.") == []
    assert reader.unknown("step 1", "Season with sea salt and black pepper.") == []
    assert set(STAPLES) <= {f.id for f in default_table().foods}


def test_a_preparation_outside_the_list_refuses_the_meal() -> None:
    draft = _meal()
    draft.ingredients[0] = draft.ingredients[0].model_copy(update={"qualifier": "peanut"})
    result = PlanValidator(parse_request({})).check(draft)
    assert isinstance(result, list)
    assert any("'peanut'" in str(v) and "allowed preparations" in str(v) for v in result)
    draft.ingredients[0] = draft.ingredients[0].model_copy(update={"qualifier": "Finely Chopped"})
    accepted = PlanValidator(parse_request({})).check(draft)
    assert isinstance(accepted, CheckedMeal)
    assert accepted.meal.ingredients[0].name == "quinoa, cooked, finely chopped"
    assert accepted.meal.ingredients[0].qualifier == "finely chopped"


def test_the_final_gate_refuses_a_renamed_ingredient_in_a_saved_plan() -> None:
    request = parse_request({"days": 1, "meals": "dinner", "calories": 1500})
    validator = PlanValidator(request)
    meal = _planned(request)[0]
    day = Day(day=1, meals=[meal], totals=meal.nutrition, target_kcal=1500, deviation_pct=0)
    assert validator.plan_violations([day]) == []
    meal.ingredients[0].name = "peanut butter"
    assert any("is not named as its food" in p for p in validator.plan_violations([day]))


@cache
def _planned_meals() -> tuple[tuple[dict[str, Any], ...], tuple[Meal, ...]]:
    request = parse_request({"days": 1, "meals": "dinner", "calories": 1500})
    result = asyncio.run(CatalogPlanner(seed=3).plan(request, PlanValidator(request), no_progress))
    meals = tuple(c.meal for day in result.days for c in day)
    return tuple(meal_answer(m) for m in meals), meals


def _planned(_request: Any) -> list[Meal]:
    return [m.model_copy(deep=True) for m in _planned_meals()[1]]


_LETTERS = st.text(string.ascii_lowercase, min_size=3, max_size=12)
_ALIEN = st.text(
    st.characters(whitelist_categories=("Lo", "Ll"), min_codepoint=0x0400), min_size=1, max_size=6
)


def _outside(word: str, meal: dict[str, Any]) -> bool:
    """Whether ``word`` is outside the vocabularies and the meal's foods."""
    table = default_table()
    own: set[str] = set()
    for ingredient in meal["ingredients"]:
        food = table.by_id(ingredient["food_id"])
        assert food is not None
        own |= food_words(food)
    read = tokens(word)
    return bool(read) and all(w not in ordinary_words() and w not in own for w in read)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    word=st.one_of(_LETTERS, _ALIEN),
    field=st.sampled_from(["title", "description", "step", "main_protein"]),
    where=st.integers(min_value=0, max_value=3),
)
def test_no_word_outside_the_vocabularies_survives_into_a_meal(
    word: str, field: str, where: int
) -> None:
    answer = dict(_planned_meals()[0][0])
    if not _outside(word, answer):
        return
    if field == "step":
        steps = list(answer["steps"])
        steps.insert(min(where, len(steps)), f"Add the {word}.")
        answer["steps"] = steps
    else:
        answer[field] = f"{answer[field]} {word}" if where % 2 else f"{word} {answer[field]}"
    request = parse_request({"days": 1, "meals": "dinner", "calories": 1500})
    validator = PlanValidator(request)
    outcome = check_meal(validator, 1, LlmMeal.model_validate(answer), [])
    read = tokens(word)
    if isinstance(outcome, list):
        assert any(f"'{read[0]}'" in reason or f"'{word}" in reason for reason in outcome)
        return
    printed = " ".join(
        [outcome.meal.title, outcome.meal.description, *outcome.meal.steps]
        + [outcome.meal.main_protein or ""]
        + [i.name for i in outcome.meal.ingredients]
    )
    assert not set(read) & set(tokens(printed)), (word, printed)
    day = Day(
        day=1,
        meals=[outcome.meal],
        totals=outcome.meal.nutrition,
        target_kcal=1500,
        deviation_pct=0,
    )
    assert not [p for p in validator.plan_violations([day]) if "not vouched" in p]


@settings(max_examples=200, deadline=None)
@given(
    word=st.one_of(_LETTERS, _ALIEN),
    field=st.sampled_from(["title", "description", "steps", "main_protein"]),
)
def test_the_final_gate_refuses_a_saved_plan_with_a_word_nothing_vouches_for(
    word: str, field: str
) -> None:
    answer = _planned_meals()[0][0]
    if not _outside(word, answer):
        return
    request = parse_request({"days": 1, "meals": "dinner", "calories": 1500})
    meal = _planned(request)[0].model_copy(update={"recipe_id": None})
    if field == "steps":
        meal.steps = [*meal.steps, f"Add the {word}."]
    else:
        setattr(meal, field, f"{getattr(meal, field) or ''} {word}")
    day = Day(day=1, meals=[meal], totals=meal.nutrition, target_kcal=1500, deviation_pct=0)
    problems = PlanValidator(request).plan_violations([day])
    assert any(tokens(word)[0] in p for p in problems), problems
