"""The red-team corpus: one subtle violation per scenario, through the real openai client.

Each scenario's fake model (``tests/fakes/red_team.py``) slips one mistake into a careful plan.
Once, the planner must come back with a corrected plan; every time, it must fail with a clear
``GenerationError``. ``NAME_CASES`` pair a safe food id with the name of a food or dish the
request rules out (the table's own unsafe foods, dishes of many cuisines and languages,
abbreviations): each is refused (asked again) or corrected (written from the ingredients), and
no printed plan carries the name. Either way nothing leaks, and nothing crashes. The leak
check here does not trust the validator's own verdict: it reads the saved plan's food ids
against the table, the plan's text for the injected words, and recomputes each day's energy
from the table.
"""

from __future__ import annotations

import asyncio
import string
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mealplan_cli.mealplans.generation import MealPlan, generate_meal_plan, generation_services
from mealplan_cli.mealplans.generation.foods import default_table
from mealplan_cli.mealplans.generation.free_text import ordinary_words, tokens
from mealplan_cli.mealplans.generation.ingredient_names import Qualifier, qualifier, render_name
from mealplan_cli.mealplans.generation.models import Meal
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.text import normalise
from mealplan_cli.mealplans.generation.vocabulary import Allergen, Diet
from mealplan_cli.ops.errors import GenerationError
from tests.conftest import OPENAI_TEST_KEY, openai_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.red_team import (
    NAME_CASES,
    SCENARIOS,
    RedTeamResponder,
    Scenario,
    description,
    step,
    title,
)

# Over 200 attacks, each through the real openai client: about 100 s of the quick loop.
pytestmark = pytest.mark.slow

PERSISTENT = [s for s in SCENARIOS if s.family not in {"calories"}][::5]


@dataclass
class Outcome:
    plan: MealPlan | None
    error: GenerationError | None
    day_calls: int


def run(scenario: Scenario, times: int) -> Outcome:
    request = parse_request(scenario.request)
    with FakeOpenAI(RedTeamResponder(scenario, times), api_key=OPENAI_TEST_KEY) as fake:
        settings = openai_settings(fake, openai_concurrency=1)

        async def plan() -> MealPlan:
            async with generation_services(settings) as services:
                return await generate_meal_plan(request, planner=services.planner)

        try:
            result = asyncio.run(plan())
        except GenerationError as error:  # a clear failure; anything else is a crash
            return Outcome(None, error, fake.calls_by_schema()["DayPlan"])
        return Outcome(result, None, fake.calls_by_schema()["DayPlan"])


def leaks(scenario: Scenario, plan: MealPlan) -> list[str]:
    """What of the scenario's violation survived into ``plan``, read without the validator."""
    table = default_table()
    request = plan.request
    found: list[str] = []
    for day in plan.days:
        energy = 0.0
        for meal in day.meals:
            names = [i.name for i in meal.ingredients]
            texts = [meal.title, meal.description, *meal.steps, *names, *meal.tags]
            if scenario.needle and normalise(scenario.needle) in normalise(" ".join(texts)):
                found.append(f"day {day.day} {meal.title!r} still says {scenario.needle!r}")
            for ingredient in meal.ingredients:
                food = table.by_id(ingredient.food_id or "")
                if food is None:
                    found.append(f"{ingredient.name!r} has no table food")
                    continue
                if food.id in scenario.forbidden_ids:
                    found.append(f"{food.id} was served")
                if food.allergens & set(request.allergies):
                    found.append(f"{food.id} contains {sorted(food.allergens)}")
                if Diet.vegetarian in request.diet and food.flags & {"meat", "poultry", "fish"}:
                    found.append(f"{food.id} is not vegetarian")
                energy += food.nutrition_for(ingredient.grams / meal.servings).kcal
            if set(meal.allergens) & set(request.allergies):
                found.append(f"{meal.title!r} declares a requested allergen")
        if abs(energy - request.calories) > 0.05 * request.calories + 1:
            found.append(f"day {day.day} really has {energy:.0f} kcal")
    return found


def test_the_corpus_covers_every_allergen_family_every_diet_and_each_trick() -> None:
    assert len(SCENARIOS) >= 60
    families = Counter(s.family for s in SCENARIOS)
    for allergen in Allergen:
        assert families[allergen.value] or any(
            allergen in parse_request(s.request).allergies for s in SCENARIOS
        ), allergen
    for diet in Diet:
        if diet is not Diet.omnivore:
            assert families[diet.value], diet
    for trick in ("look-alike", "alias", "calories", "bad output", "exclusion"):
        assert families[trick] >= 2, trick
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_a_violation_once_ends_in_a_corrected_plan(scenario: Scenario) -> None:
    outcome = run(scenario, times=1)
    assert outcome.error is None, f"a single mistake should have been corrected: {outcome.error}"
    assert outcome.plan is not None
    assert leaks(scenario, outcome.plan) == []
    if scenario.family != "claims":  # a false tag is dropped, not worth a regeneration
        request = outcome.plan.request
        clean_calls = len(request.meals) + request.days - 1  # day 1 is a call per meal
        noticed = outcome.day_calls > clean_calls or outcome.plan.metadata.validation.scaled
        assert noticed, "the violation went unnoticed"


def test_the_leak_check_itself_sees_a_leak() -> None:
    scenario = next(s for s in SCENARIOS if s.name == "satay step")
    clean = run(scenario, times=0).plan
    assert clean is not None
    assert leaks(scenario, clean) == []
    clean.days[0].meals[1].steps.append("Drizzle with SATAY sauce.")
    clean.days[0].meals[0].ingredients[0].food_id = "peanut_butter"
    found = leaks(scenario, clean)
    assert any("satay" in f for f in found)
    assert any("peanut_butter" in f for f in found)


@pytest.mark.parametrize("scenario", PERSISTENT, ids=lambda s: s.name)
def test_a_violation_every_time_ends_in_a_clear_failure(scenario: Scenario) -> None:
    outcome = run(scenario, times=10)
    plan, error = outcome.plan, outcome.error
    if plan is not None:  # scaled into shape or otherwise corrected: still nothing may leak
        assert leaks(scenario, plan) == []
        return
    assert error is not None
    message = str(error)
    assert "\n" not in message
    assert "Traceback" not in message
    assert "failed validation 3 times" in message or "did not match" in message, message


# --- the name is the food -----------------------------------------------------------------------


def _printed(meal: Meal) -> list[str]:
    """Every text of a meal the user reads."""
    return [
        meal.title,
        meal.description,
        *meal.steps,
        *(i.name for i in meal.ingredients),
        *meal.tags,
        meal.main_protein or "",
        meal.cuisine or "",
    ]


def _without(read: list[str], spans: list[tuple[str, ...]]) -> list[str | None]:
    """``read`` with every run that names one of the meal's own foods blanked out."""
    kept: list[str | None] = list(read)
    for span in sorted(spans, key=len, reverse=True):
        for start in range(len(kept) - len(span) + 1):
            if tuple(kept[start : start + len(span)]) == span:
                kept[start : start + len(span)] = [None] * len(span)
    return kept


def name_leaks(scenario: Scenario, plan: MealPlan) -> list[str]:
    """Where ``plan`` prints the scenario's food or dish, read word by word outside the names
    of each meal's own foods, or prints an ingredient under a name other than its food's."""
    table = default_table()
    needle = tokens(scenario.needle or "")
    found: list[str] = []
    for day in plan.days:
        for meal in day.meals:
            spans = []
            for ingredient in meal.ingredients:
                food = table.by_id(ingredient.food_id or "")
                if food is None:
                    found.append(f"{ingredient.name!r} has no food")
                    continue
                how = qualifier(ingredient.qualifier)
                if how is not None and not isinstance(how, Qualifier):
                    found.append(f"{ingredient.name!r} is prepared {how!r}")
                elif ingredient.name != render_name(food, how):
                    found.append(f"{ingredient.name!r} is not named as {food.name!r}")
                if food.allergens & set(plan.request.allergies):
                    found.append(f"{food.id} contains {sorted(food.allergens)}")
                spans += [tokens(label) for label in (food.name, *food.aliases)]
            for text in _printed(meal):
                read = _without(list(tokens(text)), spans)
                for start in range(len(read) - len(needle) + 1):
                    if tuple(read[start : start + len(needle)]) == needle:
                        found.append(f"day {day.day} {meal.title!r} prints {scenario.needle!r}")
    return found


def outcome_of(outcome: Outcome) -> str:
    """ "refused" when the day or meal was asked for again, "corrected" when its title was
    written from its ingredients instead, else "unnoticed"."""
    plan = outcome.plan
    assert plan is not None
    clean_calls = len(plan.request.meals) + plan.request.days - 1
    if outcome.day_calls > clean_calls:
        return "refused"
    reasons = [r for m in plan.metadata.validation.rejected for r in m.reasons]
    if any("written from its ingredients" in r for r in reasons):
        return "corrected"
    return "unnoticed"


def test_the_name_cases_cover_the_class() -> None:
    assert len(NAME_CASES) >= 60
    families = Counter(s.family for s in NAME_CASES)
    assert families["name"] >= 30
    assert families["title"] >= 30
    assert families["step"] >= 5
    assert len({s.name for s in NAME_CASES}) == len(NAME_CASES)
    non_latin = [s for s in NAME_CASES if not (s.needle or "").isascii()]
    assert len(non_latin) >= 5


@pytest.mark.parametrize("scenario", NAME_CASES, ids=lambda s: s.name)
def test_a_food_or_dish_named_on_a_safe_id_is_refused_or_corrected(scenario: Scenario) -> None:
    outcome = run(scenario, times=1)
    assert outcome.error is None, f"a single mistake should have been corrected: {outcome.error}"
    assert outcome.plan is not None
    assert name_leaks(scenario, outcome.plan) == []
    kind = outcome_of(outcome)
    print(f"outcome: {kind}")  # tally: pytest -k refused_or_corrected -rP | grep outcome:
    assert kind in {"refused", "corrected"}


def test_the_name_leak_check_itself_sees_a_leak() -> None:
    scenario = next(s for s in NAME_CASES if s.name == "peanut butter as a name (peanuts)")
    clean = run(scenario, times=0).plan
    assert clean is not None
    assert name_leaks(scenario, clean) == []
    clean.days[0].meals[0].ingredients[0].name = "peanut butter"
    clean.days[0].meals[1].steps.append("Spread with Peanut-Butter.")
    found = name_leaks(scenario, clean)
    assert any("is not named as" in f for f in found)
    assert any("prints 'peanut butter'" in f for f in found)


@pytest.mark.parametrize("scenario", NAME_CASES[::9], ids=lambda s: s.name)
def test_a_food_or_dish_named_every_time_never_prints(scenario: Scenario) -> None:
    outcome = run(scenario, times=10)
    if outcome.plan is not None:
        assert name_leaks(scenario, outcome.plan) == []
        return
    assert outcome.error is not None
    assert "failed validation 3 times" in str(outcome.error) or "did not match" in str(
        outcome.error
    )


_RANDOM_WORD = st.one_of(
    st.text(string.ascii_lowercase, min_size=4, max_size=10),
    st.text(
        st.characters(min_codepoint=0x0600, max_codepoint=0x06FF).filter(str.isalpha),
        min_size=2,
        max_size=8,
    ),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    word=_RANDOM_WORD,
    where=st.sampled_from(["title", "description", "step"]),
    allergy=st.sampled_from([[], ["peanuts"], ["milk", "eggs"]]),
)
def test_no_random_word_survives_into_a_saved_plan(
    word: str, where: str, allergy: list[str]
) -> None:
    read = tokens(word)
    assume(read and all(w not in ordinary_words() for w in read))
    mutate = {"title": title, "description": description, "step": step}[where](word)
    scenario = Scenario(f"random {word!r}", {"days": 1, "allergies": allergy}, mutate, word)
    outcome = run(scenario, times=1)
    assert outcome.plan is not None, outcome.error
    for day in outcome.plan.days:
        for meal in day.meals:
            printed = {w for text in _printed(meal) for w in tokens(text)}
            own = {w for i in meal.ingredients for w in tokens(i.name)}
            assert not (set(read) - own) & printed, (word, meal.title)
