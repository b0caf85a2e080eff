"""The offline planner: recipes from the bundled catalogue, portions scaled to the target.

It runs the same validator as any other planner on every recipe first, so only recipes the
request allows are ever considered; then it picks, day by day, for variety (no recipe twice, no
main protein three days running), the requested cuisines, the macro split and portions that stay
near one serving. The same request and seed always give the same plan.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from mealplan_cli.errors import InfeasibleRequestError
from mealplan_cli.generation.catalog import Recipe, default_catalog
from mealplan_cli.generation.drafts import DraftMeal
from mealplan_cli.generation.foods import FoodTable
from mealplan_cli.generation.meal_facts import (
    MAX_INGREDIENT_GRAMS,
    MealFacts,
    ViolationKind,
    meal_facts,
)
from mealplan_cli.generation.models import ScaledMeal
from mealplan_cli.generation.planner import (
    DayCallback,
    PlannerResult,
    Progress,
    ProgressCallback,
    no_day,
)
from mealplan_cli.generation.proteins import MAX_DAYS_IN_A_ROW, protein_key
from mealplan_cli.generation.request import MealPlanRequest
from mealplan_cli.generation.validation import CheckedMeal, PlanValidator
from mealplan_cli.generation.vocabulary import Slot

SLOT_SHARE = {Slot.breakfast: 0.25, Slot.lunch: 0.35, Slot.dinner: 0.40, Slot.snack: 0.12}
"""How a day's energy is spread over the slots it has (renormalised)."""

PORTION_RANGE = (0.4, 3.5)
"""Portions are scaled within this range of one serving before the day is balanced."""

ATTEMPTS = 60
"""Arrangements tried (each with its own derived seed) before declaring the request infeasible."""

_FILTER_ORDER = (
    (ViolationKind.diet, "fit the diet"),
    (ViolationKind.allergy, "avoid the allergies"),
    (ViolationKind.exclusion, "avoid the excluded ingredients"),
    (ViolationKind.time, "fit the cooking time"),
)


_SHARED_FACTS: dict[str, tuple[FoodTable, MealFacts]] = {}
"""Facts of the bundled recipes, shared by every planner in the process."""


@dataclass(frozen=True)
class _Candidate:
    recipe: Recipe
    kcal: float
    protein: str | None
    macro_pct: tuple[float, float, float]


def request_seed(request: MealPlanRequest) -> int:
    """A seed derived from the request itself, so that no seed still means a repeatable plan."""
    digest = hashlib.sha256(request.model_dump_json().encode()).digest()
    return int.from_bytes(digest[:4], "big")


class CatalogPlanner:
    name = "catalog"

    def __init__(self, recipes: Sequence[Recipe] | None = None, seed: int | None = None) -> None:
        self.recipes = tuple(recipes) if recipes is not None else default_catalog()
        self.seed = seed
        self._known_facts = _SHARED_FACTS if recipes is None else {}

    def _facts(self, recipe: Recipe, validator: PlanValidator) -> MealFacts:
        """A recipe's request-independent facts, worked out once per table."""
        known = self._known_facts.get(recipe.id)
        if known is None or known[0] is not validator.table:
            known = (validator.table, meal_facts(recipe.draft(recipe.slots[0]), validator.table))
            self._known_facts[recipe.id] = known
        return known[1]

    async def plan(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        on_progress: ProgressCallback,
        on_day: DayCallback = no_day,
    ) -> PlannerResult:
        """The whole plan at once: it takes milliseconds, as fast as a first day would arrive,
        so no day is reported early through ``on_day``."""
        seed = self.seed if self.seed is not None else request_seed(request)
        on_progress(Progress("outline", 0, 1, "choosing recipes from the catalogue"))
        pools = self._eligible(request, validator)
        arrangement = self._arrange(request, pools, seed)
        on_progress(Progress("outline", 1, 1, "recipes chosen"))
        result = PlannerResult(days=[], seed=seed)
        for day_number, picks in enumerate(arrangement, start=1):
            on_progress(Progress("day", day_number - 1, request.days, f"day {day_number}"))
            portions = _portions(request, picks)
            meals: list[CheckedMeal] = []
            for (slot, candidate), portion in zip(picks, portions, strict=True):
                draft = candidate.recipe.draft(slot, portion)
                _refuse_overweight(request, draft, portion)
                checked = validator.check(draft)
                if isinstance(checked, list):  # only a bug in the catalogue could get here
                    raise InfeasibleRequestError(
                        f"catalogue recipe {candidate.recipe.id} failed validation when scaled: "
                        + "; ".join(map(str, checked))
                    )
                meals.append(checked)
                if abs(portion - 1) >= 0.01:
                    result.scaled.append(
                        ScaledMeal(
                            day=day_number,
                            slot=slot,
                            title=candidate.recipe.title,
                            factor=round(portion, 3),
                        )
                    )
            fit = validator.fit_day(day_number, meals)
            if isinstance(fit, list):
                raise InfeasibleRequestError("; ".join(map(str, fit)))
            result.days.append(fit.meals)
            result.scaled += fit.scaled
        on_progress(Progress("day", request.days, request.days, "all days planned"))
        return result

    def _eligible(
        self, request: MealPlanRequest, validator: PlanValidator
    ) -> dict[Slot, list[_Candidate]]:
        """Per slot, every recipe the request allows; infeasible requests are explained here."""
        pools: dict[Slot, list[_Candidate]] = {slot: [] for slot in request.meals}
        refusals: dict[Slot, list[set[ViolationKind]]] = {slot: [] for slot in request.meals}
        for recipe in self.recipes:
            for slot in request.meals:
                if slot not in recipe.slots:
                    continue
                screened = validator.judge(self._facts(recipe, validator), _draft(recipe, slot))
                if isinstance(screened, list):
                    refusals[slot].append({v.kind for v in screened})
                    continue
                n = screened.nutrition
                energy = max(n.kcal, 1.0)
                pools[slot].append(
                    _Candidate(
                        recipe,
                        n.kcal,
                        protein_key(recipe.main_protein),
                        (400 * n.protein / energy, 400 * n.carbs / energy, 900 * n.fat / energy),
                    )
                )
        for slot in request.meals:
            if len(pools[slot]) < request.days:
                raise InfeasibleRequestError(
                    _shortage(request, slot, len(pools[slot]), refusals[slot])
                )
        distinct = {c.recipe.id for pool in pools.values() for c in pool}
        needed = request.days * len(request.meals)
        if len(distinct) < needed:
            raise InfeasibleRequestError(
                f"only {len(distinct)} catalogue recipes fit this request, and {request.days} "
                f"days of {len(request.meals)} meals need {needed} different ones: plan fewer "
                "days or meals, loosen the diet, allergies or exclusions, or use --planner openai"
            )
        return pools

    def _arrange(
        self, request: MealPlanRequest, pools: dict[Slot, list[_Candidate]], seed: int
    ) -> list[list[tuple[Slot, _Candidate]]]:
        """Recipes for every day and slot; a few seeded tries before giving up."""
        order = sorted(request.meals, key=lambda slot: len(pools[slot]))
        for attempt in range(ATTEMPTS):
            rng = random.Random(f"{seed}:{attempt}")
            plan = self._try_arrangement(request, pools, order, rng)
            if plan is not None:
                return plan
        # Name the rule that ran out: only blame protein variety if dropping it would help.
        for attempt in range(ATTEMPTS):
            rng = random.Random(f"{seed}:{attempt}")
            if self._try_arrangement(request, pools, order, rng, variety=False) is not None:
                raise InfeasibleRequestError(
                    f"could not arrange {request.days} days without serving one main protein "
                    f"more than {MAX_DAYS_IN_A_ROW} days in a row: the recipes this request "
                    "allows share too few proteins. Plan fewer days, loosen the diet, "
                    "allergies or exclusions, or use --planner openai"
                )
        raise InfeasibleRequestError(
            f"could not arrange {request.days} days without repeating a recipe: too few "
            "different recipes fit every slot. Plan fewer days or meals, loosen the diet, "
            "allergies or exclusions, or use --planner openai"
        )

    def _try_arrangement(
        self,
        request: MealPlanRequest,
        pools: dict[Slot, list[_Candidate]],
        order: list[Slot],
        rng: random.Random,
        *,
        variety: bool = True,
    ) -> list[list[tuple[Slot, _Candidate]]] | None:
        used: set[str] = set()
        history: list[set[str]] = []
        days: list[list[tuple[Slot, _Candidate]]] = []
        shares = _shares(request.meals)
        for _ in range(request.days):
            recent = history[-MAX_DAYS_IN_A_ROW:]
            full = variety and len(recent) == MAX_DAYS_IN_A_ROW
            blocked = set.intersection(*recent) if full else set()
            today: dict[Slot, _Candidate] = {}
            proteins: set[str] = set()
            for slot in order:
                candidates = [
                    c
                    for c in pools[slot]
                    if c.recipe.id not in used and (c.protein is None or c.protein not in blocked)
                ]
                if not candidates:
                    return None
                weights = [
                    _weight(request, c, request.calories * shares[slot], proteins)
                    for c in candidates
                ]
                pick = rng.choices(candidates, weights)[0]
                today[slot] = pick
                used.add(pick.recipe.id)
                if pick.protein:
                    proteins.add(pick.protein)
            history.append(proteins)
            days.append([(slot, today[slot]) for slot in request.meals])
        return days


_DRAFTS: dict[tuple[str, Slot], tuple[Recipe, DraftMeal]] = {}


def _draft(recipe: Recipe, slot: Slot) -> DraftMeal:
    """One serving of ``recipe`` for ``slot``, built once per process: judging a recipe for a
    request reads only its slot and times, and building hundreds of drafts per plan was the
    catalogue planner's largest cost."""
    known = _DRAFTS.get((recipe.id, slot))
    if known is None or known[0] is not recipe:
        known = _DRAFTS[(recipe.id, slot)] = (recipe, recipe.draft(slot))
    return known[1]


def _shares(slots: Sequence[Slot]) -> dict[Slot, float]:
    total = sum(SLOT_SHARE[slot] for slot in slots)
    return {slot: SLOT_SHARE[slot] / total for slot in slots}


def _weight(
    request: MealPlanRequest, candidate: _Candidate, slot_kcal: float, today: set[str]
) -> float:
    """How much to favour a candidate: cuisine, macro split, portion size, variety within a day."""
    weight = 1.0
    if request.cuisines and candidate.recipe.cuisine in request.cuisines:
        weight *= 4.0
    if request.macros is not None:
        wanted = (request.macros.protein, request.macros.carbs, request.macros.fat)
        distance = sum(abs(a - b) for a, b in zip(candidate.macro_pct, wanted, strict=True))
        weight *= math.exp(-distance / 15.0)
    portion = slot_kcal / max(candidate.kcal, 1.0)
    weight *= math.exp(-abs(math.log(portion)))
    if candidate.protein and candidate.protein in today:
        weight *= 0.1
    return max(weight, 1e-9)


def _portions(request: MealPlanRequest, picks: Sequence[tuple[Slot, _Candidate]]) -> list[float]:
    """Portion factors that put the day on target, each slot near its share of the energy."""
    shares = _shares(request.meals)
    low, high = PORTION_RANGE
    target = request.calories
    factors = [min(max(target * shares[slot] / max(c.kcal, 1.0), low), high) for slot, c in picks]
    planned = sum(f * c.kcal for f, (_, c) in zip(factors, picks, strict=True))
    correction = target / planned
    return [round(f * correction, 3) for f in factors]


def _refuse_overweight(request: MealPlanRequest, draft: DraftMeal, portion: float) -> None:
    """A day of few meals and many calories can scale one recipe past what a serving can
    weigh: say so, and what to change, rather than serve (or blame the catalogue)."""
    heaviest = max(draft.ingredients, key=lambda ingredient: ingredient.grams)
    if heaviest.grams <= MAX_INGREDIENT_GRAMS:
        return
    meals = len(request.meals)
    raise InfeasibleRequestError(
        f"could not arrange {request.calories} kcal a day in {meals} "
        f"{'meal' if meals == 1 else 'meals'}: {draft.title} would need {portion:.1f} "
        f"portions ({heaviest.name} {heaviest.grams:.0f} g, more than "
        f"{MAX_INGREDIENT_GRAMS:.0f} g in one serving). Add meals to the day or ask for fewer "
        "calories"
    )


def _shortage(
    request: MealPlanRequest, slot: Slot, fitting: int, refusals: list[set[ViolationKind]]
) -> str:
    """Which constraint left too few recipes for ``slot``, counted filter by filter."""
    total = fitting + len(refusals)
    steps = []
    remaining = refusals
    for kind, label in _FILTER_ORDER:
        before = len(remaining)
        remaining = [kinds for kinds in remaining if kind not in kinds]
        if len(remaining) != before:
            steps.append(f"{fitting + len(remaining)} {label} ({_describe(request, kind)})")
    chain = ", of those ".join(steps) if steps else f"{fitting} fit"
    return (
        f"not enough {slot.value} recipes for this request: of {total} in the catalogue, "
        f"{chain}; {request.days} days need {request.days} different ones. Loosen that "
        "constraint, plan fewer days, or use --planner openai"
    )


def _describe(request: MealPlanRequest, kind: ViolationKind) -> str:
    if kind is ViolationKind.diet:
        return "diet " + " + ".join(d.value for d in request.diet)
    if kind is ViolationKind.allergy:
        return "allergies " + ", ".join(a.value for a in request.allergies)
    if kind is ViolationKind.exclusion:
        return "excluding " + ", ".join(request.exclude)
    return f"at most {request.max_cook_minutes} minutes"
