"""The validator every plan passes, whoever wrote it.

A planner proposes ``DraftMeal``s. ``PlanValidator.check`` turns each into a ``Meal`` with
nutrition recomputed from the table and allergens and diets decided from the ingredients and
every word of its text, or refuses it with reasons. ``fit_day`` brings a day within 5% of the
calorie target by scaling portions when it is off by a factor the cook would accept, and
``plan_violations`` checks the finished plan as a whole: the last gate before anything is saved.

It fails closed: an ingredient that does not resolve to a table entry is refused (never passed
on the planner's own figures), text is read after Unicode normalisation against the allergen
lexicon (a mention in a title or a step counts like an ingredient), text the lexicon cannot
read is refused when the request forbids anything, and a qualifier never cancels an allergen
except a listed free-from form (``lexicon.FREE_FROM``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from mealplan_cli.generation.diets import FlaggedIngredient, diet_violations
from mealplan_cli.generation.foods import Food, FoodTable, default_table, lookup_key, words
from mealplan_cli.generation.lexicon import PROTEIN_FAMILIES
from mealplan_cli.generation.models import (
    Allergen,
    Day,
    Diet,
    DraftIngredient,
    DraftMeal,
    Ingredient,
    Meal,
    MealPlanRequest,
    Nutrition,
    ScaledMeal,
    allergen_families,
)
from mealplan_cli.generation.text import unreadable

DAY_TOLERANCE = 0.05
"""Each day's energy must be within this share of the target."""

SCALE_RANGE = (0.75, 1.33)
"""A day whose energy is off the target by a ratio in this range is fixed by scaling portions."""

MAX_DAYS_IN_A_ROW = 2
"""No main protein family on more consecutive days than this."""

MAX_INGREDIENT_GRAMS = 5000.0
"""More than this of one ingredient in one serving is a mistake, not a recipe."""

MAX_MEAL_MINUTES = 24 * 60


_CLAIM_WORDS = frozenset(d.value.replace("_", " ") for d in Diet) | {"free", "safe", "allergen"}


class ViolationKind(StrEnum):
    allergy = "allergy"
    exclusion = "exclusion"
    diet = "diet"
    time = "time"
    nutrition = "nutrition"
    structure = "structure"
    unresolved = "unresolved"


@dataclass(frozen=True)
class Violation:
    kind: ViolationKind
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CheckedMeal:
    """A draft that passed, with the meal built from it (per-serving figures in ``meal``)."""

    draft: DraftMeal
    meal: Meal
    unknown_ingredients: tuple[str, ...] = ()


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


def _amount_problems(ingredient: DraftIngredient) -> list[Violation]:
    problems: list[Violation] = []
    name = ingredient.name
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
    texts: list[tuple[str, str]] = [(f"ingredient {i.name!r}", i.name) for i in draft.ingredients]
    for ingredient in draft.ingredients:
        found = table.classify(ingredient.name)
        food = resolve(ingredient, table)
        amount_problems = _amount_problems(ingredient)
        problems += amount_problems
        if isinstance(food, str):
            problems.append(Violation(ViolationKind.unresolved, food))
            flagged.append(FlaggedIngredient(ingredient.name, found.flags, found.allergens))
            foods.append(None)
            continue
        foods.append(food)
        flagged.append(
            FlaggedIngredient(
                ingredient.name,
                found.flags | food.flags,
                found.allergens | food.allergens,
                food,
            )
        )
        if not amount_problems:
            total = total + food.nutrition_for(ingredient.grams)
    own_words = [
        _ingredient_words(i.name, f) for i, f in zip(draft.ingredients, foods, strict=True)
    ]
    for label, text in _texts(draft):
        texts.append((label, text))
        for hit in table.classify(text).hits:
            if any(set(hit.phrase.split()) <= known for known in own_words):
                continue  # "the noodles" in a step are the rice noodles listed: already counted
            flagged.append(FlaggedIngredient(f"{label} ({hit.phrase!r})", hit.flags, hit.allergens))
    strange = tuple(
        f"{label} has letters the allergen check cannot read ({char!r})"
        for label, text in texts
        if (char := unreadable(text)) is not None
    )
    if total.kcal < 30 and not problems:
        problems.append(Violation(ViolationKind.nutrition, "a meal of under 30 kcal"))
    return MealFacts(
        total, tuple(flagged), (), tuple(problems), tuple(texts), strange, tuple(foods)
    )


@dataclass
class DayFit:
    meals: list[CheckedMeal]
    scaled: list[ScaledMeal] = field(default_factory=list)


def scale_draft(draft: DraftMeal, factor: float) -> DraftMeal:
    """The same meal with every amount (and any stated figure) multiplied by ``factor``."""

    def scale(ingredient: DraftIngredient) -> DraftIngredient:
        def times(value: float | None) -> float | None:
            return None if value is None else value * factor

        return ingredient.model_copy(
            update={
                "quantity": round(ingredient.quantity * factor, 2),
                "grams": round(ingredient.grams * factor, 1),
                "kcal": times(ingredient.kcal),
                "protein": times(ingredient.protein),
                "carbs": times(ingredient.carbs),
                "fat": times(ingredient.fat),
            }
        )

    return draft.model_copy(update={"ingredients": [scale(i) for i in draft.ingredients]})


@lru_cache(maxsize=4096)
def protein_name(protein: str | None) -> str | None:
    """The main protein as saved on a meal: lowercase singular words, or ``None``."""
    if not protein or protein.strip().lower() in {"none", "null", "n/a", ""}:
        return None
    return " ".join(words(protein)) or None


@lru_cache(maxsize=4096)
def protein_key(protein: str | None) -> str | None:
    """The protein's family ("silken tofu" and "tofu" are one), for the variety rule."""
    name = protein_name(protein)
    if name is None:
        return None
    tokens = name.split()
    for size in (3, 2, 1):
        for start in range(len(tokens) - size + 1):
            family = PROTEIN_FAMILIES.get(" ".join(tokens[start : start + size]))
            if family is not None:
                return family
    return " ".join(tokens) or None


def _unsafe_claim(tag: str) -> bool:
    """A planner's tag that claims a diet or an absence; only the validator may say that."""
    tag_words = set(words(tag))
    return bool(tag_words & _CLAIM_WORDS) or " ".join(words(tag)) in _CLAIM_WORDS


class PlanValidator:
    """Applies one request's rules to meals, days and whole plans."""

    def __init__(self, request: MealPlanRequest, table: FoodTable | None = None) -> None:
        self.request = request
        self.table = table or default_table()
        self._excluded_allergens, self._excluded_flags, self._excluded_phrases = (
            self._read_exclusions(request.exclude)
        )
        self.restricted = bool(
            request.allergies
            or request.exclude
            or any(d is not Diet.omnivore for d in request.diet)
        )

    @staticmethod
    def _read_exclusions(
        terms: Sequence[str],
    ) -> tuple[dict[Allergen, str], dict[str, str], list[tuple[str, tuple[str, ...]]]]:
        """Split exclusions into allergen families, diet flags and plain phrases.

        "nuts" or "dairy" excludes whole families (aliases widen as for allergies); "pork" or
        "mushrooms" excludes by name.
        """
        allergens: dict[Allergen, str] = {}
        flags: dict[str, str] = {}
        phrases: list[tuple[str, tuple[str, ...]]] = []
        flag_words = {"meat", "poultry", "fish", "shellfish", "dairy", "egg", "honey", "alcohol"}
        for term in terms:
            key = " ".join(words(term))
            for allergen in allergen_families(key) or allergen_families(term) or ():
                allergens[allergen] = term
            if key in flag_words:
                flags[key] = term
            phrases.append((term, tuple(words(term))))
            family = PROTEIN_FAMILIES.get(key)
            if family is not None and family == key:  # "pork" excludes chorizo and bacon too
                phrases += [
                    (term, tuple(words(member)))
                    for member, of in PROTEIN_FAMILIES.items()
                    if of == family and member != key
                ]
        return allergens, flags, phrases

    def allows(self, food: Food) -> bool:
        """Whether ``food`` may appear in any meal of this request (diets, allergies,
        exclusions): the foods a model may choose from."""
        flagged = [FlaggedIngredient(food.name, food.flags, food.allergens, food)]
        for label in (food.name, *food.aliases):
            found = self.table.classify(label)
            flagged.append(FlaggedIngredient(label, found.flags, found.allergens, food))
        for ingredient in flagged:
            if ingredient.allergens & set(self.request.allergies):
                return False
            if self.request.exclude and self._exclusion_hits(ingredient):
                return False
        for diet in self.request.diet:
            if diet_violations(diet, flagged, Nutrition(), macros=False):
                return False
        return True

    def check(self, draft: DraftMeal) -> CheckedMeal | list[Violation]:
        """The meal built from ``draft``, or every reason it cannot be served."""
        screened = self.screen(draft)
        if isinstance(screened, list):
            return screened
        meal = self._build(draft, screened)
        return CheckedMeal(draft, meal, screened.unknown_ingredients)

    def screen(self, draft: DraftMeal) -> MealFacts | list[Violation]:
        """Whether ``draft`` may be served, and its per-serving facts (no meal built)."""
        return self.judge(meal_facts(draft, self.table), draft)

    def judge(self, facts: MealFacts, draft: DraftMeal) -> MealFacts | list[Violation]:
        """Apply this request's rules to facts already worked out for ``draft``."""
        violations = list(facts.problems)
        if draft.slot not in self.request.meals:
            violations.append(
                Violation(ViolationKind.structure, f"{draft.slot.value} was not requested")
            )
        if self.restricted:
            violations += [Violation(ViolationKind.structure, text) for text in facts.unreadable]
        minutes = draft.prep_minutes + draft.cook_minutes
        violations += self._content_violations(facts.ingredients, facts.nutrition, minutes)
        if self.request.exclude:
            violations += self._excluded_in_text(facts.texts, violations)
        return violations or facts

    def _excluded_in_text(
        self, texts: Sequence[tuple[str, str]], found: Sequence[Violation]
    ) -> list[Violation]:
        already = {v.message for v in found}
        hits = []
        for label, text in texts:
            text_words = tuple(words(text))
            for term, phrase in self._excluded_phrases:
                message = f"{label} mentions {term}, which is excluded"
                if _contains(text_words, phrase) and message not in already:
                    hits.append(Violation(ViolationKind.exclusion, message))
        return hits

    def _content_violations(
        self, flagged: Sequence[FlaggedIngredient], nutrition: Nutrition, minutes: int
    ) -> list[Violation]:
        request = self.request
        violations: list[Violation] = []
        allergies = set(request.allergies)
        for ingredient in flagged:
            for allergen in sorted(ingredient.allergens & allergies):
                violations.append(
                    Violation(ViolationKind.allergy, f"{ingredient.name} contains {allergen.value}")
                )
            if request.exclude:
                violations += self._exclusion_hits(ingredient)
        for diet in request.diet:
            for reason in diet_violations(diet, flagged, nutrition):
                violations.append(Violation(ViolationKind.diet, reason))
        limit = request.max_cook_minutes
        if limit is not None and minutes > limit:
            violations.append(
                Violation(
                    ViolationKind.time,
                    f"takes {minutes} minutes, more than the {limit} allowed",
                )
            )
        return violations

    def _exclusion_hits(self, ingredient: FlaggedIngredient) -> list[Violation]:
        hits = [
            term
            for allergen, term in self._excluded_allergens.items()
            if allergen in ingredient.allergens
        ]
        hits += [term for flag, term in self._excluded_flags.items() if flag in ingredient.flags]
        labels = [ingredient.name]
        if ingredient.food is not None:
            labels += [ingredient.food.name, *ingredient.food.aliases]
        label_words = [tuple(words(label)) for label in labels]
        for term, phrase in self._excluded_phrases:
            if term not in hits and any(_contains(lw, phrase) for lw in label_words):
                hits.append(term)
        return [
            Violation(ViolationKind.exclusion, f"{ingredient.name} is excluded ({term})")
            for term in dict.fromkeys(hits)
        ]

    def _build(self, draft: DraftMeal, facts: MealFacts) -> Meal:
        servings = self.request.household_size
        flagged = facts.ingredients
        per_serving = facts.nutrition
        allergens: set[Allergen] = set()
        for ingredient in flagged:
            allergens |= ingredient.allergens
        diets = [
            diet.value
            for diet in Diet
            if diet is not Diet.omnivore and not diet_violations(diet, flagged, per_serving)
        ]
        kept_tags = [t for t in draft.tags if t.strip() and not _unsafe_claim(t)]
        foods = list(facts.foods) + [None] * (len(draft.ingredients) - len(facts.foods))
        return Meal(
            slot=draft.slot,
            title=draft.title.strip(),
            description=draft.description.strip(),
            cuisine=draft.cuisine,
            main_protein=protein_name(draft.main_protein),
            ingredients=[
                Ingredient(
                    name=i.name,
                    quantity=round(i.quantity * servings, 2),
                    unit=i.unit,
                    grams=round(i.grams * servings, 1),
                    food_id=food.id if food is not None else None,
                )
                for i, food in zip(draft.ingredients, foods, strict=True)
            ],
            steps=[s.strip() for s in draft.steps],
            prep_minutes=draft.prep_minutes,
            cook_minutes=draft.cook_minutes,
            servings=servings,
            nutrition=per_serving.rounded(),
            allergens=sorted(allergens),
            tags=list(dict.fromkeys([*kept_tags, *diets])),
            recipe_id=draft.recipe_id,
        )

    def fit_day(self, day: int, meals: list[CheckedMeal]) -> DayFit | list[Violation]:
        """The day's meals within 5% of the target, scaled if they need it and may be."""
        target = self.request.calories
        total = sum(m.meal.nutrition.kcal for m in meals)
        if total <= 0:
            return [Violation(ViolationKind.nutrition, f"day {day} has no energy at all")]
        ratio = total / target
        if abs(ratio - 1) <= DAY_TOLERANCE:
            return DayFit(meals)
        low, high = SCALE_RANGE
        if not low <= ratio <= high:
            return [
                Violation(
                    ViolationKind.nutrition,
                    f"day {day} has {total:.0f} kcal against a target of {target} "
                    f"({ratio:.2f}x), beyond what scaling portions may fix ({low}-{high}x)",
                )
            ]
        factor = 1 / ratio
        fitted: list[CheckedMeal] = []
        scaled: list[ScaledMeal] = []
        for checked in meals:
            result = self.check(scale_draft(checked.draft, factor))
            if isinstance(result, list):
                return result
            fitted.append(result)
            scaled.append(
                ScaledMeal(day=day, slot=checked.meal.slot, title=checked.meal.title, factor=factor)
            )
        return DayFit(fitted, scaled)

    def plan_violations(self, days: Sequence[Day]) -> list[str]:
        """Everything wrong with a finished plan; empty means it may be saved.

        Each meal is read again from what the plan says (ingredients by food id, every text),
        whoever built it: the same rules as ``check``, applied to the saved form.
        """
        request = self.request
        problems: list[str] = []
        if len(days) != request.days:
            problems.append(f"the plan has {len(days)} days, {request.days} were requested")
        seen_titles: dict[str, int] = {}
        proteins_by_day: list[set[str]] = []
        for day in days:
            slots = [meal.slot for meal in day.meals]
            if slots != request.meals:
                wanted = ", ".join(s.value for s in request.meals)
                problems.append(f"day {day.day} has meals {slots}, wanted {wanted}")
            total = sum(meal.nutrition.kcal for meal in day.meals)
            if abs(total - request.calories) > DAY_TOLERANCE * request.calories:
                problems.append(
                    f"day {day.day} has {total:.0f} kcal, target {request.calories} +-5%"
                )
            proteins: set[str] = set()
            for meal in day.meals:
                where = f"day {day.day} {meal.slot.value} {meal.title!r}"
                draft = _as_draft(meal)
                judged = self.judge(meal_facts(draft, self.table), draft)
                if isinstance(judged, list):
                    problems += [f"{where}: {violation}" for violation in judged]
                else:
                    declared = set(meal.allergens)
                    found: set[Allergen] = set()
                    for ingredient in judged.ingredients:
                        found |= ingredient.allergens
                    missing = sorted(a.value for a in found - declared)
                    if missing:
                        problems.append(f"{where}: allergens not declared: {', '.join(missing)}")
                key = lookup_key(meal.title)
                if key in seen_titles:
                    problems.append(f"{where} repeats day {seen_titles[key]}")
                seen_titles.setdefault(key, day.day)
                protein = protein_key(meal.main_protein)
                if protein:
                    proteins.add(protein)
            proteins_by_day.append(proteins)
        problems += _protein_runs(proteins_by_day)
        return problems


def _as_draft(meal: Meal) -> DraftMeal:
    """A saved meal read back as one serving of a draft."""
    servings = max(meal.servings, 1)
    return DraftMeal(
        slot=meal.slot,
        title=meal.title,
        description=meal.description,
        cuisine=meal.cuisine,
        main_protein=meal.main_protein,
        ingredients=[
            DraftIngredient(
                name=i.name,
                quantity=i.quantity / servings,
                unit=i.unit,
                grams=i.grams / servings,
                food_id=i.food_id,
            )
            for i in meal.ingredients
        ],
        steps=meal.steps,
        prep_minutes=meal.prep_minutes,
        cook_minutes=meal.cook_minutes,
        tags=meal.tags,
        recipe_id=meal.recipe_id,
    )


def _contains(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    size = len(needle)
    return size > 0 and any(
        haystack[i : i + size] == needle for i in range(len(haystack) - size + 1)
    )


def _protein_runs(proteins_by_day: list[set[str]]) -> list[str]:
    problems = []
    limit = MAX_DAYS_IN_A_ROW + 1
    for start in range(len(proteins_by_day) - limit + 1):
        window = proteins_by_day[start : start + limit]
        for protein in sorted(set.intersection(*window)):
            problems.append(
                f"{protein} is the main protein on days {start + 1}-{start + limit}, "
                f"more than {MAX_DAYS_IN_A_ROW} days in a row"
            )
    return problems
