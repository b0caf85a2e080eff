"""A red-team "model": a careful plan with one subtle violation slipped into it.

``RedTeamResponder`` answers like ``CatalogResponder`` (a plan that keeps the request), then
changes the lunch of the first ``times`` day answers with the scenario's mutation: an allergen in
a step, a title or a display name, a prepared food whose allergen is not in the word, look-alike
letters, a food id outside the safe list, fudged amounts, broken structure. ``SCENARIOS`` is the
corpus; ``tests/unit/test_red_team.py`` drives each through the real openai client and checks that
the plan comes back corrected or fails clearly, with nothing leaked.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mealplan_cli.mealplans.generation.foods import default_table
from mealplan_cli.mealplans.generation.vocabulary import Allergen
from tests.fakes.meal_responder import CatalogResponder
from tests.fakes.openai_server import ChatRequest

Mutation = Callable[[dict[str, Any]], None]
"""Changes one meal of a day answer in place."""


@dataclass(frozen=True)
class Scenario:
    name: str
    request: dict[str, Any]
    mutate: Mutation
    needle: str | None = None
    """Text that must not survive into the plan (read after normalisation)."""
    forbidden_ids: tuple[str, ...] = ()
    """Food ids that must not appear in the plan."""
    family: str = ""
    """The allergen family, diet or trick the scenario exercises (for the coverage check)."""


class RedTeamResponder:
    """``CatalogResponder`` with ``scenario``'s mutation applied to the first ``times`` days."""

    def __init__(self, scenario: Scenario, times: int = 1) -> None:
        self.scenario = scenario
        self.remaining = times
        self._base = CatalogResponder()
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> dict[str, Any]:
        answer = self._base(request)
        if request.schema_name != "DayPlan":
            return answer
        with self._lock:
            if self.remaining <= 0:
                return answer
            self.remaining -= 1
        answer = copy.deepcopy(answer)
        meals = answer["meals"]
        self.scenario.mutate(meals[min(1, len(meals) - 1)])
        return answer


def step(text: str) -> Mutation:
    def mutate(meal: dict[str, Any]) -> None:
        meal["steps"].append(text)

    return mutate


def title(text: str) -> Mutation:
    def mutate(meal: dict[str, Any]) -> None:
        meal["title"] = f"{text} {meal['title']}"

    return mutate


def description(text: str) -> Mutation:
    def mutate(meal: dict[str, Any]) -> None:
        meal["description"] = f"{meal['description']} {text}"

    return mutate


def display_name(text: str) -> Mutation:
    """The first ingredient keeps its (safe) food id but is shown as ``text``."""

    def mutate(meal: dict[str, Any]) -> None:
        meal["ingredients"][0]["name"] = text

    return mutate


def add_food(food_id: str, name: str, grams: float = 30) -> Mutation:
    def mutate(meal: dict[str, Any]) -> None:
        meal["ingredients"].append(
            {"food_id": food_id, "name": name, "quantity": grams, "unit": "g", "grams": grams}
        )

    return mutate


def scale_grams(factor: float) -> Mutation:
    def mutate(meal: dict[str, Any]) -> None:
        for ingredient in meal["ingredients"]:
            ingredient["grams"] = ingredient["grams"] * factor
            ingredient["quantity"] = ingredient["quantity"] * factor

    return mutate


def set_field(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(meal: dict[str, Any]) -> None:
        target: Any = meal
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def drop_field(key: str) -> Mutation:
    def mutate(meal: dict[str, Any]) -> None:
        meal.pop(key, None)

    return mutate


def _scenario(
    name: str,
    request: dict[str, Any],
    mutate: Mutation,
    family: str,
    needle: str | None = None,
    forbidden_ids: tuple[str, ...] = (),
) -> Scenario:
    base = {"days": 1, "calories": 2000}
    return Scenario(name, {**base, **request}, mutate, needle, forbidden_ids, family)


def _allergy(allergy: str) -> dict[str, Any]:
    return {"allergies": [allergy]}


SCENARIOS: list[Scenario] = [
    # --- the 14 allergen families, the allergen hidden in a prepared food or a text ---------
    _scenario(
        "satay step", _allergy("peanuts"), step("Drizzle with satay sauce."), "peanuts", "satay"
    ),
    _scenario("peanut title", _allergy("peanuts"), title("Peanut Satay"), "peanuts", "peanut"),
    _scenario(
        "peanut id",
        _allergy("peanuts"),
        add_food("peanut_butter", "nut butter"),
        "peanuts",
        forbidden_ids=("peanut_butter",),
    ),
    _scenario(
        "nutella name", _allergy("tree_nuts"), display_name("nutella"), "tree_nuts", "nutella"
    ),
    _scenario(
        "almondmilk one word",
        _allergy("tree_nuts"),
        step("Loosen with a splash of almondmilk."),
        "tree_nuts",
        "almondmilk",
    ),
    _scenario(
        "almonds cyrillic o",
        _allergy("tree_nuts"),
        step("Scatter toasted alm\u043ends on top."),
        "look-alike",
        "almonds",
    ),
    _scenario(
        "almond-based description",
        _allergy("tree_nuts"),
        description("An almond-based crunch."),
        "tree_nuts",
        "almond",
    ),
    _scenario("pesto title", _allergy("tree_nuts"), title("Pesto"), "tree_nuts", "pesto"),
    _scenario(
        "za'atar step",
        _allergy("sesame"),
        step("Finish with a pinch of za'atar."),
        "sesame",
        "za'atar",
    ),
    _scenario(
        "tahini name", _allergy("sesame"), display_name("tahini drizzle"), "sesame", "tahini"
    ),
    _scenario(
        "tahini id",
        _allergy("sesame"),
        add_food("tahini", "sauce", 15),
        "sesame",
        forbidden_ids=("tahini",),
    ),
    _scenario("caesar fish", _allergy("fish"), display_name("caesar dressing"), "fish", "caesar"),
    _scenario(
        "worcestershire step",
        _allergy("fish"),
        step("Season with a dash of worcestershire."),
        "fish",
        "worcestershire",
    ),
    _scenario(
        "caesar eggs", _allergy("eggs"), step("Toss with caesar dressing."), "eggs", "caesar"
    ),
    _scenario(
        "aioli eggs", _allergy("eggs"), description("Served with garlic aioli."), "eggs", "aioli"
    ),
    _scenario(
        "lo mein gluten", _allergy("gluten"), display_name("lo mein noodles"), "gluten", "lo mein"
    ),
    _scenario(
        "high-gluten flour",
        _allergy("gluten"),
        step("Dust with high-gluten bread flour."),
        "gluten",
        "flour",
    ),
    _scenario(
        "couscous id",
        {"diet": ["gluten_free"]},
        add_food("couscous_cooked", "grains", 80),
        "gluten_free",
        forbidden_ids=("couscous_cooked",),
    ),
    _scenario("cheesecake milk", _allergy("milk"), title("Cheesecake-Style"), "milk", "cheesecake"),
    _scenario(
        "rice pudding milk",
        _allergy("milk"),
        step("Serve with a spoon of rice pudding."),
        "milk",
        "rice pudding",
    ),
    _scenario(
        "lactose-free milk", _allergy("milk"), display_name("lactose-free milk"), "milk", "lactose"
    ),
    _scenario(
        "dairy butter", _allergy("milk"), step("Melt a knob of dairy butter."), "milk", "butter"
    ),
    _scenario(
        "creme fraiche accents",
        _allergy("milk"),
        description("Topped with cre\u0300me frai\u0302che."),
        "look-alike",
        "creme fraiche",
    ),
    _scenario(
        "oats in whole milk",
        _allergy("milk"),
        step("Cook rolled oats in whole milk."),
        "milk",
        "whole milk",
    ),
    _scenario(
        "crawfish",
        _allergy("crustaceans"),
        display_name("crawfish tails"),
        "crustaceans",
        "crawfish",
    ),
    _scenario(
        "shrimp paste",
        _allergy("crustaceans"),
        step("Stir in a little shrimp paste."),
        "crustaceans",
        "shrimp",
    ),
    _scenario(
        "scallops shellfish alias",
        _allergy("shellfish"),
        step("Sear two scallops alongside."),
        "alias",
        "scallop",
    ),
    _scenario(
        "oyster sauce", _allergy("molluscs"), step("Glaze with oyster sauce."), "molluscs", "oyster"
    ),
    _scenario("calamari", _allergy("molluscs"), title("Calamari and"), "molluscs", "calamari"),
    _scenario(
        "peanuts nuts alias", _allergy("nuts"), step("Top with roasted peanuts."), "alias", "peanut"
    ),
    _scenario("cashews nuts alias", _allergy("nuts"), step("Top with cashews."), "alias", "cashew"),
    _scenario(
        "seafood alias", _allergy("seafood"), step("Add a handful of mussels."), "alias", "mussel"
    ),
    _scenario("lupini", _allergy("lupin"), display_name("lupini beans"), "lupin", "lupini"),
    _scenario(
        "lupin flour", _allergy("lupin"), step("Thicken with lupin flour."), "lupin", "lupin"
    ),
    _scenario(
        "dry sherry", _allergy("sulphites"), step("Deglaze with dry sherry."), "sulphites", "sherry"
    ),
    _scenario(
        "white wine",
        _allergy("sulphites"),
        step("Add a splash of white wine."),
        "sulphites",
        "wine",
    ),
    _scenario(
        "mustard seeds",
        _allergy("mustard"),
        step("Temper with mustard seeds."),
        "mustard",
        "mustard",
    ),
    _scenario("dijon", _allergy("mustard"), display_name("dijon dressing"), "mustard", "dijon"),
    _scenario("celeriac", _allergy("celery"), step("Add grated celeriac."), "celery", "celeriac"),
    _scenario(
        "stock celery", _allergy("celery"), step("Simmer in vegetable stock."), "celery", "stock"
    ),
    _scenario("miso", _allergy("soybeans"), step("Whisk in white miso."), "soybeans", "miso"),
    _scenario("edamame", _allergy("soybeans"), display_name("edamame"), "soybeans", "edamame"),
    _scenario(
        "soy sauce gluten",
        _allergy("gluten"),
        step("Season with soy sauce."),
        "gluten",
        "soy sauce",
    ),
    # --- diets --------------------------------------------------------------------------------
    _scenario(
        "bone broth vegetarian",
        {"diet": ["vegetarian"]},
        step("Simmer in bone broth."),
        "vegetarian",
        "bone broth",
    ),
    _scenario(
        "ground meat vegetarian",
        {"diet": ["vegetarian"]},
        display_name("ground meat"),
        "vegetarian",
        "meat",
    ),
    _scenario(
        "parmesan vegetarian",
        {"diet": ["vegetarian"]},
        step("Shave parmesan over the top."),
        "vegetarian",
        "parmesan",
    ),
    _scenario(
        "anchovy vegetarian",
        {"diet": ["vegetarian"]},
        step("Mash in two anchovies."),
        "vegetarian",
        "anchov",
    ),
    _scenario(
        "chicken id vegetarian",
        {"diet": ["vegetarian"]},
        add_food("chicken_breast", "protein", 120),
        "vegetarian",
        forbidden_ids=("chicken_breast",),
    ),
    _scenario("honey vegan", {"diet": ["vegan"]}, step("Drizzle with honey."), "vegan", "honey"),
    _scenario("ghee vegan", {"diet": ["vegan"]}, display_name("ghee"), "vegan", "ghee"),
    _scenario(
        "gelatin vegan", {"diet": ["vegan"]}, description("Set with gelatin."), "vegan", "gelatin"
    ),
    _scenario(
        "egg id vegan",
        {"diet": ["vegan"]},
        add_food("egg", "egg", 50),
        "vegan",
        forbidden_ids=("egg",),
    ),
    _scenario(
        "chicken stock pescatarian",
        {"diet": ["pescatarian"]},
        step("Cook in chicken stock."),
        "pescatarian",
        "chicken",
    ),
    _scenario(
        "bacon pescatarian", {"diet": ["pescatarian"]}, title("Bacon and"), "pescatarian", "bacon"
    ),
    _scenario(
        "rice id keto",
        {"diet": ["keto"], "calories": 2000},
        add_food("white_rice_cooked", "rice", 150),
        "keto",
        forbidden_ids=("white_rice_cooked",),
    ),
    _scenario(
        "lentils paleo", {"diet": ["paleo"]}, step("Stir in cooked lentils."), "paleo", "lentil"
    ),
    _scenario(
        "salami mediterranean",
        {"diet": ["mediterranean"]},
        step("Top with sliced salami."),
        "mediterranean",
        "salami",
    ),
    _scenario(
        "couscous gluten free",
        {"diet": ["gluten_free"]},
        step("Serve over couscous."),
        "gluten_free",
        "couscous",
    ),
    _scenario(
        "whey dairy free",
        {"diet": ["dairy_free"]},
        step("Blend in whey protein."),
        "dairy_free",
        "whey",
    ),
    # --- exclusions -----------------------------------------------------------------------------
    _scenario(
        "mushroom exclusion",
        {"exclude": ["mushrooms"]},
        step("Add sliced mushrooms."),
        "exclusion",
        "mushroom",
    ),
    _scenario(
        "pork exclusion", {"exclude": ["pork"]}, step("Add diced pork belly."), "exclusion", "pork"
    ),
    # --- fudged amounts, unknown foods and broken output ------------------------------------------
    _scenario("calories halved", {}, scale_grams(0.3), "calories"),
    _scenario("calories tripled", {}, scale_grams(3.0), "calories"),
    _scenario(
        "protein bar unknown id",
        {},
        add_food("protein_bar", "protein bar", 200),
        "calories",
        forbidden_ids=("protein_bar",),
    ),
    _scenario("negative quantity", {}, set_field(("ingredients", 0, "quantity"), -2), "bad output"),
    _scenario("negative grams", {}, set_field(("ingredients", 0, "grams"), -150), "bad output"),
    _scenario("absurd grams", {}, set_field(("ingredients", 0, "grams"), 90000), "bad output"),
    _scenario("missing steps", {}, drop_field("steps"), "bad output"),
    _scenario(
        "wrong slot",
        {"meals": ["breakfast", "lunch", "dinner"]},
        set_field(("slot",), "snack"),
        "bad output",
    ),
    _scenario("no ingredients", {}, set_field(("ingredients",), []), "bad output"),
    _scenario(
        "unreadable title", _allergy("peanuts"), title("\u82b1\u751f"), "look-alike", "\u82b1\u751f"
    ),
    _scenario(
        "fullwidth peanut",
        _allergy("peanuts"),
        step("Add \uff50\uff45\uff41\uff4e\uff55\uff54\uff53."),
        "look-alike",
        "peanut",
    ),
    _scenario(
        "zero-width peanut", _allergy("peanuts"), step("Add pea\u200bnuts."), "look-alike", "peanut"
    ),
    _scenario(
        "nut-free tag lie",
        _allergy("peanuts"),
        set_field(("tags",), ["peanut-free", "safe"]),
        "claims",
        "peanut-free",
    ),
]


# --- the name is the food: a safe id under another food's name, dish names, abbreviations --------


def written_name(text: str) -> Mutation:
    """The first ingredient keeps its safe id and is given ``text`` as a name, a field the day
    schema no longer has: the printed name is the food's own."""

    def mutate(meal: dict[str, Any]) -> None:
        meal["ingredients"][0]["name"] = text

    return mutate


def qualified(text: str) -> Mutation:
    """``text`` written as the first ingredient's preparation, outside the closed list."""

    def mutate(meal: dict[str, Any]) -> None:
        meal["ingredients"][0]["qualifier"] = text

    return mutate


def _unsafe_foods(allergen: Allergen) -> list[str]:
    """Three of the table's own foods this allergy rules out: first, middle and last by name."""
    names = sorted(food.name for food in default_table().foods if allergen in food.allergens)
    return list(dict.fromkeys([names[0], names[len(names) // 2], names[-1]]))


def _table_cases() -> list[Scenario]:
    cases = []
    for allergen in Allergen:
        request = _allergy(allergen.value)
        for n, name in enumerate(_unsafe_foods(allergen)):
            cases.append(
                _scenario(
                    f"{name} as a name ({allergen.value})",
                    request,
                    written_name(name),
                    "name",
                    name,
                )
            )
            if n == 0:
                cases.append(
                    _scenario(
                        f"{name} as a qualifier ({allergen.value})",
                        request,
                        qualified(name),
                        "name",
                        name,
                    )
                )
            if n < 2:
                cases.append(
                    _scenario(
                        f"{name} in a title ({allergen.value})",
                        request,
                        title(name.title()),
                        "title",
                        name,
                    )
                )
    return cases


DISHES: list[tuple[str, str]] = [
    # (dish, the allergy it is unsafe for): cuisines and languages, abbreviations included
    ("Pesto", "tree_nuts"),
    ("Pad Thai", "peanuts"),
    ("Tiramisu", "milk"),
    ("PB&J", "peanuts"),
    ("PBJ", "peanuts"),
    ("BLT", "gluten"),
    ("Mac n Cheese", "milk"),
    ("Gado-Gado", "peanuts"),
    ("Mafé", "peanuts"),
    ("Kung Pao", "peanuts"),
    ("Bibimbap", "eggs"),
    ("Okonomiyaki", "eggs"),
    ("Tamagoyaki", "eggs"),
    ("Chawanmushi", "eggs"),
    ("Zabaglione", "eggs"),
    ("Carbonara", "eggs"),
    ("Pastitsio", "milk"),
    ("Käsespätzle", "milk"),
    ("Croque Monsieur", "milk"),
    ("Spanakopita", "milk"),
    ("Panna Cotta", "milk"),
    ("Crème Brûlée", "milk"),
    ("Kulfi", "milk"),
    ("Paneer Tikka", "milk"),
    ("Moqueca", "fish"),
    ("Ceviche", "fish"),
    ("Bouillabaisse", "fish"),
    ("Vitello Tonnato", "fish"),
    ("Gambas al Ajillo", "crustaceans"),
    ("Tom Yum Goong", "crustaceans"),
    ("Nasi Goreng", "crustaceans"),
    ("Har Gow", "crustaceans"),
    ("Moules Marinières", "molluscs"),
    ("Takoyaki", "molluscs"),
    ("Spaghetti alle Vongole", "molluscs"),
    ("Pierogi", "gluten"),
    ("Tabbouleh", "gluten"),
    ("Udon", "gluten"),
    ("Baklava", "tree_nuts"),
    ("Muhammara", "tree_nuts"),
    ("Romesco", "tree_nuts"),
    ("Halva", "sesame"),
    ("Tarator", "sesame"),
    ("Dukkah", "sesame"),
    ("Mapo Tofu", "soybeans"),
    ("Natto", "soybeans"),
    ("Waldorf", "celery"),
    ("Piccalilli", "mustard"),
    ("Coq au Vin", "sulphites"),
    ("Lupini Salad", "lupin"),
    ("\u82b1\u751f\u9171", "peanuts"),  # Chinese: peanut butter
    ("\u30d4\u30fc\u30ca\u30c3\u30c4", "peanuts"),  # Japanese: peanuts
    ("\u0444\u0443\u043d\u0434\u0443\u043a", "tree_nuts"),  # Russian: hazelnut
    ("\u062d\u0645\u0635", "sesame"),  # Arabic: hummus
    ("\uc0c8\uc6b0", "crustaceans"),  # Korean: shrimp
]

_DISH_STEPS = ("Pesto", "Pad Thai", "PB&J", "Tiramisu", "Nasi Goreng", "Dukkah", "Romesco")
_DISH_DESCRIPTIONS = ("Bibimbap", "Ceviche", "Käsespätzle", "Takoyaki", "Muhammara")


def _dish_cases() -> list[Scenario]:
    cases = [
        _scenario(f"{dish} in a title", _allergy(allergy), title(dish), "title", dish)
        for dish, allergy in DISHES
    ]
    allergy_of = dict(DISHES)
    cases += [
        _scenario(
            f"{dish} in a step",
            _allergy(allergy_of[dish]),
            step(f"Serve with {dish}."),
            "step",
            dish,
        )
        for dish in _DISH_STEPS
    ]
    cases += [
        _scenario(
            f"{dish} in a description",
            _allergy(allergy_of[dish]),
            description(f"Like a {dish}."),
            "title",
            dish,
        )
        for dish in _DISH_DESCRIPTIONS
    ]
    return cases


NAME_CASES: list[Scenario] = _table_cases() + _dish_cases()
"""Each pairs a safe food id with the name of a food or dish the request rules out."""
