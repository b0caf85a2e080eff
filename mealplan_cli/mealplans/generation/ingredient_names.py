"""An ingredient's printed name is its food's: the planner may add a preparation, nothing else.

A model that picks a safe ``food_id`` and writes the name of another food ("peanut butter" on
the id of sunflower butter) would print that other food under a passing validation; no lexicon
can know every such name. So nothing a planner writes becomes a name: the printed name is the
table entry's own, and a planner may only add one ``Qualifier`` from a closed list of cuts and
preparations ("red onion, diced"). Every qualifier word is a preparation word of the table's
lookup (``foods._PREPARATION_WORDS``), so the printed name still looks the food up.
"""

from __future__ import annotations

from enum import StrEnum

from mealplan_cli.mealplans.generation.foods import Food


class Qualifier(StrEnum):
    """How an ingredient is cut or prepared: the only words a planner may add to its name."""

    chopped = "chopped"
    finely_chopped = "finely chopped"
    roughly_chopped = "roughly chopped"
    diced = "diced"
    minced = "minced"
    sliced = "sliced"
    thinly_sliced = "thinly sliced"
    cubed = "cubed"
    grated = "grated"
    finely_grated = "finely grated"
    coarsely_grated = "coarsely grated"
    shredded = "shredded"
    julienned = "julienned"
    spiralized = "spiralized"
    halved = "halved"
    quartered = "quartered"
    torn = "torn"
    crushed = "crushed"
    mashed = "mashed"
    pureed = "pureed"
    flaked = "flaked"
    shaved = "shaved"
    peeled = "peeled"
    deseeded = "deseeded"
    cored = "cored"
    trimmed = "trimmed"
    rinsed = "rinsed"
    drained = "drained"
    thawed = "thawed"
    juiced = "juiced"
    zested = "zested"
    squeezed = "squeezed"
    toasted = "toasted"
    lightly_toasted = "lightly toasted"
    grilled = "grilled"
    sauteed = "sauteed"
    boiled = "boiled"
    poached = "poached"
    melted = "melted"
    softened = "softened"
    beaten = "beaten"
    whisked = "whisked"
    warmed = "warmed"
    chilled = "chilled"


def qualifier(value: str | None) -> Qualifier | str | None:
    """``value`` as a ``Qualifier``, ``None`` for none, or the text itself when it is not one
    (then the validator refuses the meal)."""
    if value is None or not value.strip():
        return None
    text = " ".join(value.strip().lower().split())
    try:
        return Qualifier(text)
    except ValueError:
        return value


def render_name(food: Food, how: Qualifier | None = None) -> str:
    """The printed name of ``food``: its table name, then the preparation if there is one."""
    return food.name if how is None else f"{food.name}, {how.value}"


def short_name(food: Food) -> str:
    """The table name without its qualifying tail: "chickpeas, cooked" -> "chickpeas"."""
    return food.name.split(",")[0].strip()


_SEASONING_AISLES = frozenset(
    {"oils, sauces & condiments", "spices & herbs", "baking & sweeteners", "drinks"}
)


def _listed(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def title_from(foods: list[tuple[Food, float]]) -> str:
    """A title written from a meal's foods (with grams), the largest first: "Chicken breast
    with brown rice and broccoli". Used when a planner's own title cannot be vouched for."""
    ordered = [food for food, _ in sorted(foods, key=lambda pair: -pair[1])]
    main = [food for food in ordered if food.aisle not in _SEASONING_AISLES] or ordered
    names = list(dict.fromkeys(short_name(food) for food in main))[:3]
    if not names:
        return ""
    if len(names) == 1:
        return _capitalised(names[0])
    return _capitalised(f"{names[0]} with {_listed(names[1:])}")


def description_from(foods: list[tuple[Food, float]]) -> str:
    """A description written from a meal's foods: each of them, the largest first."""
    ordered = [food for food, _ in sorted(foods, key=lambda pair: -pair[1])]
    names = list(dict.fromkeys(short_name(food) for food in ordered))
    return _capitalised(_listed(names)) + "." if names else ""
