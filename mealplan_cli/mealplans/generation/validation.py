"""The validator every plan passes, whoever wrote it.

A planner proposes ``DraftMeal``s. ``PlanValidator.check`` turns each into a ``Meal`` with
nutrition recomputed from the table and allergens and diets decided from the ingredients and
every word of its text, or refuses it with reasons. ``fit_day`` brings a day within 5% of the
calorie target by scaling portions when it is off by a factor the cook would accept, and
``plan_violations`` checks the finished plan as a whole: the last gate before anything is saved.

It fails closed: an ingredient that does not resolve to a table entry is refused (never passed
on the planner's own figures) and is printed under its food's own name; text is read after
Unicode normalisation against the allergen lexicon (a mention in a title or a step counts like
an ingredient), and word by word against the meal's foods and the ordinary words, a word
neither vouches for refusing the meal (``free_text``); text the lexicon cannot read is refused
when the request forbids anything, and a qualifier never cancels an allergen except a listed
free-from form (``lexicon.FREE_FROM``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mealplan_cli.mealplans.generation.diets import FlaggedIngredient, diet_violations
from mealplan_cli.mealplans.generation.drafts import DraftMeal
from mealplan_cli.mealplans.generation.exclusions import exclusions_for
from mealplan_cli.mealplans.generation.foods import (
    Food,
    FoodTable,
    default_table,
    lookup_key,
    words,
)
from mealplan_cli.mealplans.generation.meal_facts import (
    MealFacts,
    Violation,
    ViolationKind,
    meal_facts,
)
from mealplan_cli.mealplans.generation.models import Day, Ingredient, Meal, Nutrition, ScaledMeal
from mealplan_cli.mealplans.generation.portions import (
    DAY_TOLERANCE,
    SCALE_RANGE,
    per_serving_draft,
    scale_draft,
)
from mealplan_cli.mealplans.generation.proteins import protein_key, protein_name, protein_runs
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.vocabulary import Allergen, Diet

_CLAIM_WORDS = frozenset(d.value.replace("_", " ") for d in Diet) | {"free", "safe", "allergen"}


@dataclass(frozen=True)
class CheckedMeal:
    """A draft that passed, with the meal built from it (per-serving figures in ``meal``)."""

    draft: DraftMeal
    meal: Meal
    unknown_ingredients: tuple[str, ...] = ()


@dataclass
class DayFit:
    meals: list[CheckedMeal]
    scaled: list[ScaledMeal] = field(default_factory=list)


def _unsafe_claim(tag: str) -> bool:
    """A planner's tag that claims a diet or an absence; only the validator may say that."""
    tag_words = set(words(tag))
    return bool(tag_words & _CLAIM_WORDS) or " ".join(words(tag)) in _CLAIM_WORDS


class PlanValidator:
    """Applies one request's rules to meals, days and whole plans."""

    def __init__(self, request: MealPlanRequest, table: FoodTable | None = None) -> None:
        self.request = request
        self.table = table or default_table()
        self.exclusions = exclusions_for(request.exclude, self.table)
        self.restricted = bool(
            request.allergies
            or request.exclude
            or any(d is not Diet.omnivore for d in request.diet)
        )

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
            for term in self.exclusions.mentioned_in(tuple(words(text))):
                message = f"{label} mentions {term}, which is excluded"
                if message not in already:
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
        labels = [ingredient.name]
        if ingredient.food is not None:
            labels += [ingredient.food.name, *ingredient.food.aliases]
        hits = self.exclusions.named_by(
            ingredient.allergens, ingredient.flags, [tuple(words(label)) for label in labels]
        )
        hits += self.exclusions.through_composition(ingredient.food)
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
        kept_tags = [
            t for t in draft.tags if t.strip() and not _unsafe_claim(t) and t not in facts.bad_tags
        ]
        return Meal(
            slot=draft.slot,
            title=draft.title.strip(),
            description=draft.description.strip(),
            cuisine=draft.cuisine,
            main_protein=protein_name(draft.main_protein),
            ingredients=[
                Ingredient(
                    name=name,
                    quantity=round(i.quantity * servings, 2),
                    unit=i.unit,
                    grams=round(i.grams * servings, 1),
                    food_id=food.id if food is not None else None,
                    qualifier=how.value if how is not None else None,
                )
                for i, food, name, how in zip(
                    draft.ingredients, facts.foods, facts.names, facts.qualifiers, strict=True
                )
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
                draft = per_serving_draft(meal)
                judged = self.judge(meal_facts(draft, self.table), draft)
                if isinstance(judged, list):
                    problems += [f"{where}: {violation}" for violation in judged]
                else:
                    problems += [
                        f"{where}: the ingredient {saved.name!r} is not named as its food "
                        f"({name!r})"
                        for saved, name in zip(meal.ingredients, judged.names, strict=True)
                        if saved.name != name
                    ]
                    problems += [
                        f"{where}: the tag {tag!r} is not vouched for" for tag in judged.bad_tags
                    ]
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
        problems += protein_runs(proteins_by_day)
        return problems
