"""The validator every plan passes, whoever wrote it.

A planner proposes ``DraftMeal``s. ``PlanValidator.check`` turns each into a ``Meal`` with
nutrition recomputed from the table and allergens and diets decided from the ingredients, or
refuses it with reasons. ``fit_day`` brings a day within 5% of the calorie target by scaling
portions when it is off by a factor the cook would accept, and ``plan_violations`` checks the
finished plan as a whole: the last gate before anything is saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mealplan_cli.generation.diets import FlaggedIngredient, diet_violations
from mealplan_cli.generation.foods import FoodTable, default_table, lookup_key, words
from mealplan_cli.generation.models import (
    ALLERGEN_ALIASES,
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
)
from mealplan_cli.generation.nutrition import ingredient_facts

DAY_TOLERANCE = 0.05
"""Each day's energy must be within this share of the target."""

SCALE_RANGE = (0.75, 1.33)
"""A day whose energy is off the target by a ratio in this range is fixed by scaling portions."""

MAX_DAYS_IN_A_ROW = 2
"""No main protein on more consecutive days than this."""


class ViolationKind(StrEnum):
    allergy = "allergy"
    exclusion = "exclusion"
    diet = "diet"
    time = "time"
    nutrition = "nutrition"
    structure = "structure"


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
    """What a draft is, whatever the request: nutrition per serving, what its ingredients
    contain, and problems no request could excuse (a weightless or unknowable ingredient)."""

    nutrition: Nutrition
    ingredients: tuple[FlaggedIngredient, ...]
    unknown_ingredients: tuple[str, ...]
    problems: tuple[Violation, ...]


def meal_facts(draft: DraftMeal, table: FoodTable) -> MealFacts:
    problems: list[Violation] = []
    if not draft.ingredients or not draft.steps:
        problems.append(Violation(ViolationKind.structure, "a meal needs ingredients and steps"))
    total = Nutrition()
    unknown: list[str] = []
    flagged: list[FlaggedIngredient] = []
    for ingredient in draft.ingredients:
        found = table.classify(ingredient.name)
        flagged.append(FlaggedIngredient(ingredient.name, found.flags, found.allergens, found.food))
        if ingredient.grams <= 0:
            problems.append(
                Violation(ViolationKind.nutrition, f"{ingredient.name!r} has no weight")
            )
            continue
        facts = ingredient_facts(ingredient, table)
        if isinstance(facts, str):
            problems.append(Violation(ViolationKind.nutrition, facts))
            continue
        total = total + facts.nutrition
        if not facts.from_table:
            unknown.append(ingredient.name)
    if total.kcal < 30 and not problems:
        problems.append(Violation(ViolationKind.nutrition, "a meal of under 30 kcal"))
    return MealFacts(total, tuple(flagged), tuple(unknown), tuple(problems))


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


def protein_key(protein: str | None) -> str | None:
    if not protein or protein.strip().lower() in {"none", "null", "n/a", ""}:
        return None
    return " ".join(words(protein))


class PlanValidator:
    """Applies one request's rules to meals, days and whole plans."""

    def __init__(self, request: MealPlanRequest, table: FoodTable | None = None) -> None:
        self.request = request
        self.table = table or default_table()
        self._excluded_allergens, self._excluded_flags, self._excluded_phrases = (
            self._read_exclusions(request.exclude)
        )

    @staticmethod
    def _read_exclusions(
        terms: Sequence[str],
    ) -> tuple[dict[Allergen, str], dict[str, str], list[tuple[str, tuple[str, ...]]]]:
        """Split exclusions into allergen families, diet flags and plain phrases.

        "nuts" or "dairy" excludes a whole family; "pork" or "mushrooms" excludes by name.
        """
        allergens: dict[Allergen, str] = {}
        flags: dict[str, str] = {}
        phrases: list[tuple[str, tuple[str, ...]]] = []
        flag_words = {"meat", "poultry", "fish", "shellfish", "dairy", "egg", "honey", "alcohol"}
        for term in terms:
            key = " ".join(words(term))
            allergen = ALLERGEN_ALIASES.get(key) or ALLERGEN_ALIASES.get(term)
            if allergen is None and term in Allergen.__members__:
                allergen = Allergen(term)
            if allergen is not None:
                allergens[allergen] = term
            if key in flag_words:
                flags[key] = term
            phrases.append((term, tuple(words(term))))
        return allergens, flags, phrases

    def check(self, draft: DraftMeal) -> CheckedMeal | list[Violation]:
        """The meal built from ``draft``, or every reason it cannot be served."""
        screened = self.screen(draft)
        if isinstance(screened, list):
            return screened
        meal = self._build(draft, screened.ingredients, screened.nutrition)
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
        minutes = draft.prep_minutes + draft.cook_minutes
        violations += self._content_violations(facts.ingredients, facts.nutrition, minutes)
        return violations or facts

    def content_violations(
        self, ingredient_names: Sequence[str], nutrition: Nutrition, minutes: int
    ) -> list[Violation]:
        """Allergies, exclusions, diets and cooking time: what the request forbids."""
        return self._content_violations(self._flag(ingredient_names), nutrition, minutes)

    def _flag(self, ingredient_names: Sequence[str]) -> list[FlaggedIngredient]:
        flagged = []
        for name in ingredient_names:
            found = self.table.classify(name)
            flagged.append(FlaggedIngredient(name, found.flags, found.allergens, found.food))
        return flagged

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
            for term in hits
        ]

    def _build(
        self, draft: DraftMeal, flagged: Sequence[FlaggedIngredient], per_serving: Nutrition
    ) -> Meal:
        servings = self.request.household_size
        allergens: set[Allergen] = set()
        for ingredient in flagged:
            allergens |= ingredient.allergens
        diets = [
            diet.value
            for diet in Diet
            if diet is not Diet.omnivore and not diet_violations(diet, flagged, per_serving)
        ]
        return Meal(
            slot=draft.slot,
            title=draft.title.strip(),
            description=draft.description.strip(),
            cuisine=draft.cuisine,
            main_protein=protein_key(draft.main_protein),
            ingredients=[
                Ingredient(
                    name=i.name,
                    quantity=round(i.quantity * servings, 2),
                    unit=i.unit,
                    grams=round(i.grams * servings, 1),
                )
                for i in draft.ingredients
            ],
            steps=[s.strip() for s in draft.steps],
            prep_minutes=draft.prep_minutes,
            cook_minutes=draft.cook_minutes,
            servings=servings,
            nutrition=per_serving.rounded(),
            allergens=sorted(allergens),
            tags=list(dict.fromkeys([*draft.tags, *diets])),
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
        """Everything wrong with a finished plan; empty means it may be saved."""
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
                for violation in self.content_violations(
                    [i.name for i in meal.ingredients],
                    meal.nutrition,
                    meal.prep_minutes + meal.cook_minutes,
                ):
                    problems.append(f"{where}: {violation}")
                missing = self._undeclared_allergens(meal)
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

    def _undeclared_allergens(self, meal: Meal) -> list[str]:
        found: set[Allergen] = set()
        for ingredient in meal.ingredients:
            found |= self.table.classify(ingredient.name).allergens
        return sorted(a.value for a in found - set(meal.allergens))


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
