"""What a draft meal is, whatever the request asks.

``meal_facts`` works out a draft's nutrition per serving from the food table, what its
ingredients and every word of its text contain (allergens, diet flags), and the problems no
request could excuse: an ingredient that does not resolve to a table entry, a preparation
outside the closed list, a word of its text that none of its foods nor the ordinary words
vouch for (``free_text``), a weightless or absurd amount, a meal without steps. An ingredient
is known by its food's own name (``ingredient_names``), whatever name the planner wrote.
``PlanValidator`` then judges these facts against one request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from mealplan_cli.mealplans.generation.catalog import recipe_by_id
from mealplan_cli.mealplans.generation.diets import FlaggedIngredient
from mealplan_cli.mealplans.generation.drafts import DraftIngredient, DraftMeal
from mealplan_cli.mealplans.generation.foods import Food, FoodTable, words
from mealplan_cli.mealplans.generation.free_text import MealReader, recipe_words
from mealplan_cli.mealplans.generation.ingredient_names import Qualifier, qualifier, render_name
from mealplan_cli.mealplans.generation.models import Nutrition
from mealplan_cli.mealplans.generation.text import unreadable
from mealplan_cli.mealplans.generation.vocabulary import Diet

MAX_INGREDIENT_GRAMS = 5000.0
"""More than this of one ingredient in one serving is a mistake, not a recipe."""

MAX_MEAL_MINUTES = 24 * 60

_DIET_TAGS = frozenset(diet.value for diet in Diet)
"""Tags the validator writes itself (a planner's own claims are dropped before that)."""


class ViolationKind(StrEnum):
    allergy = "allergy"
    exclusion = "exclusion"
    diet = "diet"
    time = "time"
    nutrition = "nutrition"
    structure = "structure"
    unresolved = "unresolved"
    wording = "wording"


@dataclass(frozen=True)
class Violation:
    kind: ViolationKind
    message: str
    where: str = ""
    """For a ``wording`` violation, the text it was found in ("the title", "step 2")."""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class MealFacts:
    """What a draft is, whatever the request: nutrition per serving, what its ingredients and
    text contain, and problems no request could excuse (a weightless or unknowable ingredient).

    ``ingredients`` holds one entry per ingredient, then one per text mention (a title, a step)
    that implies an allergen or a diet flag; ``texts`` every free text, for exclusions.
    """

    nutrition: Nutrition
    ingredients: tuple[FlaggedIngredient, ...]
    unknown_ingredients: tuple[str, ...]
    problems: tuple[Violation, ...]
    texts: tuple[tuple[str, str], ...] = ()
    unreadable: tuple[str, ...] = ()
    foods: tuple[Food | None, ...] = ()
    names: tuple[str, ...] = ()
    """Each ingredient's printed name: its food's name and preparation."""
    qualifiers: tuple[Qualifier | None, ...] = ()
    bad_tags: tuple[str, ...] = ()
    """Tags with a word the meal cannot vouch for: dropped from the meal, never printed."""


def resolve(ingredient: DraftIngredient, table: FoodTable) -> Food | str:
    """The table entry an ingredient is, or why it is none (then the meal is refused)."""
    if ingredient.food_id is not None:
        food = table.by_id(ingredient.food_id)
        if food is None:
            return f"{ingredient.name!r} names the unknown food id {ingredient.food_id!r}"
        return food
    food = table.lookup(ingredient.name)
    if food is None:
        return (
            f"{ingredient.name!r} is not in the nutrition table: choose a food the table has "
            "(its nutrition and allergens cannot be vouched for)"
        )
    return food


def _amount_problems(ingredient: DraftIngredient, name: str) -> list[Violation]:
    problems: list[Violation] = []
    if not math.isfinite(ingredient.grams) or not math.isfinite(ingredient.quantity):
        problems.append(Violation(ViolationKind.structure, f"{name!r} has no usable amount"))
    elif ingredient.grams <= 0:
        problems.append(Violation(ViolationKind.nutrition, f"{name!r} has no weight"))
    elif ingredient.grams > MAX_INGREDIENT_GRAMS:
        problems.append(
            Violation(
                ViolationKind.nutrition,
                f"{name!r} weighs {ingredient.grams:.0f} g in one serving, more than "
                f"{MAX_INGREDIENT_GRAMS:.0f} g",
            )
        )
    if math.isfinite(ingredient.quantity) and ingredient.quantity < 0:
        problems.append(Violation(ViolationKind.structure, f"{name!r} has a negative quantity"))
    if not name.strip():
        problems.append(Violation(ViolationKind.structure, "an ingredient has no name"))
    return problems


def _qualifier_problem(ingredient: DraftIngredient, name: str) -> Qualifier | Violation | None:
    how = qualifier(ingredient.qualifier)
    if how is not None and not isinstance(how, Qualifier):
        return Violation(
            ViolationKind.structure,
            f"{name!r} is prepared {how!r}, which is not one of the allowed preparations "
            f"({', '.join(q.value for q in Qualifier)})",
        )
    return how


def _vouched(draft: DraftMeal) -> frozenset[str]:
    """The words of the catalogue recipe ``draft`` comes from (reviewed data), else none."""
    return _recipe_words(draft.recipe_id) if draft.recipe_id else frozenset()


@lru_cache(maxsize=1024)
def _recipe_words(recipe_id: str) -> frozenset[str]:
    recipe = recipe_by_id(recipe_id)
    if recipe is None:
        return frozenset()
    return recipe_words(
        [
            recipe.title,
            recipe.description,
            recipe.main_protein or "",
            recipe.cuisine,
            *recipe.steps,
            *recipe.tags,
        ]
    )


def _texts(draft: DraftMeal) -> list[tuple[str, str]]:
    """Every free text of a draft, labelled for messages."""
    texts = [("the title", draft.title), ("the description", draft.description)]
    if draft.main_protein:
        texts.append(("the main protein", draft.main_protein))
    if draft.cuisine:
        texts.append(("the cuisine", draft.cuisine))
    texts += [(f"step {n}", step) for n, step in enumerate(draft.steps, start=1)]
    return texts


def _ingredient_words(name: str, food: Food | None) -> frozenset[str]:
    """The words an ingredient goes by: its display name and, once resolved, its table labels.

    A text mention made only of these words refers to that ingredient, whose allergens are
    already counted (from its food and its display name, whichever says more)."""
    own = _label_words(name)
    return own if food is None else own | _food_words(food.name, food.aliases)


@lru_cache(maxsize=16384)
def _label_words(label: str) -> frozenset[str]:
    return frozenset(words(label))


@lru_cache(maxsize=4096)
def _food_words(name: str, aliases: tuple[str, ...]) -> frozenset[str]:
    return frozenset(w for label in (name, *aliases) for w in words(label))


def meal_facts(draft: DraftMeal, table: FoodTable) -> MealFacts:
    problems: list[Violation] = []
    if not draft.ingredients or not draft.steps:
        problems.append(Violation(ViolationKind.structure, "a meal needs ingredients and steps"))
    for label, minutes in (("prep", draft.prep_minutes), ("cook", draft.cook_minutes)):
        if not 0 <= minutes <= MAX_MEAL_MINUTES:
            problems.append(
                Violation(ViolationKind.structure, f"{label} time of {minutes} minutes")
            )
    total = Nutrition()
    flagged: list[FlaggedIngredient] = []
    foods: list[Food | None] = []
    names: list[str] = []
    qualifiers: list[Qualifier | None] = []
    for ingredient in draft.ingredients:
        food = resolve(ingredient, table)
        how: Qualifier | None = None
        if isinstance(food, str):
            name = ingredient.name or str(ingredient.food_id or "")
        else:
            prepared = _qualifier_problem(ingredient, food.name)
            if isinstance(prepared, Violation):
                problems.append(prepared)
            else:
                how = prepared
            name = render_name(food, how)
        names.append(name)
        qualifiers.append(how)
        found = table.classify(name)
        amount_problems = _amount_problems(ingredient, name)
        problems += amount_problems
        if isinstance(food, str):
            problems.append(Violation(ViolationKind.unresolved, food))
            flagged.append(FlaggedIngredient(name, found.flags, found.allergens))
            foods.append(None)
            continue
        foods.append(food)
        flagged.append(
            FlaggedIngredient(
                name, found.flags | food.flags, found.allergens | food.allergens, food
            )
        )
        if not amount_problems:
            total = total + food.nutrition_for(ingredient.grams)
    texts: list[tuple[str, str]] = [(f"ingredient {name!r}", name) for name in names]
    own_words = [_ingredient_words(n, f) for n, f in zip(names, foods, strict=True)]
    reader = MealReader(table, (f for f in foods if f is not None), _vouched(draft))
    for label, text in _texts(draft):
        texts.append((label, text))
        for hit in table.classify(text).hits:
            if any(set(hit.phrase.split()) <= known for known in own_words):
                continue  # "the noodles" in a step are the rice noodles listed: already counted
            flagged.append(FlaggedIngredient(f"{label} ({hit.phrase!r})", hit.flags, hit.allergens))
        problems += [
            Violation(ViolationKind.wording, str(unknown), label)
            for unknown in reader.unknown(label, text)
        ]
    bad_tags = tuple(
        tag for tag in draft.tags if tag not in _DIET_TAGS and reader.unknown("a tag", tag)
    )
    strange = tuple(
        f"{label} has letters the allergen check cannot read ({char!r})"
        for label, text in texts
        if (char := unreadable(text)) is not None
    )
    if total.kcal < 30 and not problems:
        problems.append(Violation(ViolationKind.nutrition, "a meal of under 30 kcal"))
    return MealFacts(
        total,
        tuple(flagged),
        (),
        tuple(problems),
        tuple(texts),
        strange,
        tuple(foods),
        tuple(names),
        tuple(qualifiers),
        bad_tags,
    )
