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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mealplan_cli.mealplans.generation.catalog import Recipe, default_catalog
from mealplan_cli.mealplans.generation.cuisine_share import (
    CuisineSupply,
    cuisine_target,
    other_rules_note,
    too_few_note,
)
from mealplan_cli.mealplans.generation.day_balance import SIDES, Balanced, Dish, balance, side_foods
from mealplan_cli.mealplans.generation.diets import KETO_MAX_NET_CARB_ENERGY
from mealplan_cli.mealplans.generation.drafts import DraftIngredient, DraftMeal
from mealplan_cli.mealplans.generation.feasibility import (
    CALORIES,
    carries,
    check_day_energy,
    shortage,
    side_room,
)
from mealplan_cli.mealplans.generation.foods import Food, FoodTable
from mealplan_cli.mealplans.generation.meal_facts import (
    MAX_INGREDIENT_GRAMS,
    MealFacts,
    meal_facts,
)
from mealplan_cli.mealplans.generation.models import ScaledMeal
from mealplan_cli.mealplans.generation.plan_report import constraints_phrase
from mealplan_cli.mealplans.generation.planner import (
    DayCallback,
    PlannerResult,
    Progress,
    ProgressCallback,
    no_day,
)
from mealplan_cli.mealplans.generation.portions import max_serving_grams, portion_limit
from mealplan_cli.mealplans.generation.proteins import MAX_DAYS_IN_A_ROW, protein_key
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator
from mealplan_cli.mealplans.generation.vocabulary import Diet, Slot
from mealplan_cli.ops.errors import InfeasibleRequestError

SLOT_SHARE = {Slot.breakfast: 0.25, Slot.lunch: 0.35, Slot.dinner: 0.40, Slot.snack: 0.12}
"""How a day's energy is spread over the slots it has (renormalised)."""

PORTION_RANGE = (0.4, 3.5)
"""Portions are scaled within this range of one serving before the day is balanced."""

DAY_TRIES = 12
"""Draws of one day's recipes before an arrangement gives up on that day's energy."""

ATTEMPTS = 60
"""Arrangements tried (each with its own derived seed) before declaring the request infeasible."""

COURSE_ATTEMPTS = 20
"""Arrangements tried on course for the asked cuisines, per way of spreading them, before
settling for what a day-by-day choice gives."""

_LAST_POOLS: dict[str, tuple[str, FoodTable, tuple[Recipe, ...], dict[Slot, list[_Candidate]]]] = {}
"""The last request's pools, with the table and recipes they were judged from."""

_SHARED_FACTS: dict[str, tuple[FoodTable, MealFacts]] = {}
"""Facts of the bundled recipes, shared by every planner in the process."""


@dataclass(frozen=True)
class _Candidate:
    recipe: Recipe
    kcal: float
    protein: str | None
    macro_pct: tuple[float, float, float]
    dish: Dish
    capacity: float
    """The most energy this dish can bring in typical portions, with its slot's sides."""


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
        sides = _sides(request, validator)
        pools = self._eligible(request, validator, sides)
        arrangement, cuisine_note = self._arrange(request, pools, seed)
        on_progress(Progress("outline", 1, 1, "recipes chosen"))
        result = PlannerResult(days=[], seed=seed, cuisine_note=cuisine_note)
        for day_number, picks in enumerate(arrangement, start=1):
            on_progress(Progress("day", day_number - 1, request.days, f"day {day_number}"))
            balanced = balance(
                request.calories,
                [c.dish for _, c in picks],
                _portions(request, picks),
                [_other_sides(sides[slot], c.recipe) for slot, c in picks],
                request.macros,
            )
            meals: list[CheckedMeal] = []
            for index, ((slot, candidate), portion) in enumerate(
                zip(picks, balanced.portions, strict=True)
            ):
                draft = _with_side(candidate.recipe.draft(slot, portion), balanced, index)
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

    def precheck(self, request: MealPlanRequest, validator: PlanValidator) -> None:
        """Raise ``InfeasibleRequestError`` naming the cause if no plan can be made, before
        any work (and before any call a caller would pay for)."""
        self._eligible(request, validator, _sides(request, validator))

    def _eligible(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        sides: dict[Slot, list[Food]],
    ) -> dict[Slot, list[_Candidate]]:
        """Per slot, every recipe the request allows, in portions that can carry its share of
        the day's energy; infeasible requests are explained here. The last answer is kept, so
        the pipeline's pre-check and the plan after it judge the recipes once."""
        key = request.model_dump_json()
        last = _LAST_POOLS.get("last")
        if last and last[0] == key and last[1] is validator.table and last[2] is self.recipes:
            return last[3]
        pools = self._judge_all(request, validator, sides)
        _LAST_POOLS["last"] = (key, validator.table, self.recipes, pools)
        return pools

    def _judge_all(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        sides: dict[Slot, list[Food]],
    ) -> dict[Slot, list[_Candidate]]:
        pools: dict[Slot, list[_Candidate]] = {slot: [] for slot in request.meals}
        refusals: dict[Slot, list[set[str]]] = {slot: [] for slot in request.meals}
        shares = _shares(request.meals)
        room = {slot: side_room(sides[slot]) for slot in request.meals}
        for recipe in self.recipes:
            for slot in request.meals:
                if slot not in recipe.slots:
                    continue
                screened = validator.judge(self._facts(recipe, validator), _draft(recipe, slot))
                if isinstance(screened, list):
                    refusals[slot].append({v.kind.value for v in screened})
                    continue
                n = screened.nutrition
                energy = max(n.kcal, 1.0)
                limit = portion_limit(
                    [
                        (food, i.grams)
                        for food, i in zip(screened.foods, recipe.ingredients, strict=False)
                    ]
                )
                dish = Dish(n, PORTION_RANGE[0], min(PORTION_RANGE[1], limit))
                if not carries(dish, room[slot], request.calories * shares[slot]):
                    refusals[slot].append({CALORIES})
                    continue
                pools[slot].append(
                    _Candidate(
                        recipe,
                        n.kcal,
                        protein_key(recipe.main_protein),
                        (400 * n.protein / energy, 400 * n.carbs / energy, 900 * n.fat / energy),
                        dish,
                        n.kcal * dish.high + room[slot],
                    )
                )
        for slot in request.meals:
            if len(pools[slot]) < request.days:
                raise InfeasibleRequestError(
                    shortage(request, slot, len(pools[slot]), refusals[slot])
                )
        check_day_energy(
            request,
            {slot: [c.dish for c in pools[slot]] for slot in request.meals},
            room,
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
    ) -> tuple[list[list[tuple[Slot, _Candidate]]], str | None]:
        """Recipes for every day and slot, and why the asked cuisines make fewer than 2 of 3
        meals if they do; a bounded number of seeded tries before giving up.

        When cuisines are asked for, the first tries keep every pick on course for as many
        asked-cuisine meals as the recipes allow (up to 2 of 3), spread over the days, then
        anywhere in the plan; only then does it settle for what a day-by-day choice gives."""
        order = sorted(request.meals, key=lambda slot: len(pools[slot]))
        target = cuisine_target(request)
        supply = _supply(request, pools)
        reachable = supply.bound([request.days] * len(request.meals))
        goal = min(target, reachable)
        for spread, attempts in ((True, COURSE_ATTEMPTS), (False, COURSE_ATTEMPTS)):
            if not goal:
                break
            for attempt in range(attempts):
                rng = random.Random(f"{seed}:{'spread' if spread else 'plan'}:{attempt}")
                course = _Course(supply.copy(), goal, request, spread=spread)
                plan = self._try_arrangement(
                    request, pools, order, rng, course=course, cuisines_first=True
                )
                if plan is not None:
                    return plan, self._cuisine_note(request, pools, order, seed, plan, supply)
        for attempt in range(ATTEMPTS):
            rng = random.Random(f"{seed}:{attempt}")
            # First tries serve the cuisines asked for wherever one fits; later ones only
            # favour them, in case that rigour is what makes the days impossible.
            first = attempt < ATTEMPTS // 2
            plan = self._try_arrangement(request, pools, order, rng, cuisines_first=first)
            if plan is not None:
                return plan, self._cuisine_note(request, pools, order, seed, plan, supply)
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
        for attempt in range(ATTEMPTS):
            rng = random.Random(f"{seed}:{attempt}")
            if self._try_arrangement(request, pools, order, rng, energy=False) is not None:
                meals = len(request.meals)
                raise InfeasibleRequestError(
                    f"could not arrange {request.calories} kcal a day in {meals} "
                    f"{'meal' if meals == 1 else 'meals'} for {request.days} days: too few of "
                    "the dishes this request allows are large enough, in typical portions with "
                    "sides, to fill every day without repeating one. Add meals to the day, ask "
                    "for fewer calories, or plan fewer days"
                )
        raise InfeasibleRequestError(
            f"could not arrange {request.days} days without repeating a recipe: too few "
            f"different recipes fit every slot ({_counts(request, pools)}"
            + (f" fit {phrase}" if (phrase := constraints_phrase(request)) else "")
            + ", and one recipe may serve several slots). Plan fewer days or meals, loosen "
            "the diet, allergies or exclusions, or use --planner openai"
        )

    def _cuisine_note(
        self,
        request: MealPlanRequest,
        pools: dict[Slot, list[_Candidate]],
        order: list[Slot],
        seed: int,
        plan: list[list[tuple[Slot, _Candidate]]],
        supply: CuisineSupply,
    ) -> str | None:
        """Why fewer than 2 of 3 meals come from the asked cuisines, from a check rather than
        a guess: too few recipes by the bound, or else the rule whose relaxing reaches it."""
        target = cuisine_target(request)
        served = sum(1 for day in plan for _, c in day if c.recipe.cuisine in request.cuisines)
        if served >= target:
            return None
        reachable = supply.bound([request.days] * len(request.meals))
        if reachable < target:
            return too_few_note(request, supply, served)
        for rule, relaxed in (("protein", {"variety": False}), ("energy", {"energy": False})):
            for attempt in range(COURSE_ATTEMPTS):
                rng = random.Random(f"{seed}:{rule}:{attempt}")
                course = _Course(supply.copy(), target, request, spread=False)
                tried = self._try_arrangement(request, pools, order, rng, course=course, **relaxed)
                if tried is not None:
                    return other_rules_note(request, reachable, served, rule)
        return other_rules_note(request, reachable, served, "both")

    def _try_arrangement(
        self,
        request: MealPlanRequest,
        pools: dict[Slot, list[_Candidate]],
        order: list[Slot],
        rng: random.Random,
        *,
        variety: bool = True,
        energy: bool = True,
        course: _Course | None = None,
        cuisines_first: bool = False,
    ) -> list[list[tuple[Slot, _Candidate]]] | None:
        used: set[str] = set()
        history: list[set[str]] = []
        days: list[list[tuple[Slot, _Candidate]]] = []
        for day in range(request.days):
            recent = history[-MAX_DAYS_IN_A_ROW:]
            full = variety and len(recent) == MAX_DAYS_IN_A_ROW
            blocked = set.intersection(*recent) if full else set()
            for _try in range(DAY_TRIES):
                today_course = course.for_day(day) if course is not None else None
                today = _pick_day(
                    request, pools, order, rng, used, blocked, today_course, cuisines_first
                )
                if today is None:
                    return None
                if not energy or _carries_the_day(request, today.values()):
                    break
            else:
                return None
            course = today_course
            used |= {c.recipe.id for c in today.values()}
            history.append({c.protein for c in today.values() if c.protein})
            days.append([(slot, today[slot]) for slot in request.meals])
        return days


@dataclass
class _Course:
    """Where an arrangement stands on its cuisine goal: the asked-cuisine recipes not yet
    served, the asked meals still owed and the places still open per slot. ``spread`` also
    owes each day its own even share, so the asked meals are not all spent in the first days
    and every day of a plan that can have 2 of 3 from the asked cuisines has them."""

    supply: CuisineSupply
    goal: int
    request: MealPlanRequest
    spread: bool
    served: int = 0
    places: list[int] | None = None
    due_today: int = 0
    served_today: int = 0

    def for_day(self, day: int) -> _Course:
        """A copy for trying day ``day`` (from 0), so a refused try leaves this one as it was."""
        days = self.request.days
        places = self.places or [days] * len(self.request.meals)
        due = 0
        if self.spread:
            due = math.ceil(self.goal * (day + 1) / days - 1e-9)
            due -= math.ceil(self.goal * day / days - 1e-9)
        return _Course(
            self.supply.copy(),
            self.goal,
            self.request,
            self.spread,
            self.served,
            list(places),
            max(due, 0),
            0,
        )

    def allows(self, slot: Slot, candidates: list[_Candidate], left_today: int) -> list[_Candidate]:
        """The candidates after which the goal stays reachable (and today's share, if spread)."""
        index = self.request.meals.index(slot)
        places = list(self.places or [])
        places[index] -= 1
        owed = self.goal - self.served
        plain = (
            self.due_today - self.served_today < left_today and self.supply.bound(places) >= owed
        )
        masks = self.supply.masks
        fits: dict[int, bool] = {}
        kept = []
        for c in candidates:
            mask = masks.get(c.recipe.id)
            if mask is None:
                if plain:
                    kept.append(c)
                continue
            if mask not in fits:
                fits[mask] = self.supply.bound(places, without=mask) >= owed - 1
            if fits[mask]:
                kept.append(c)
        return kept

    def take(self, slot: Slot, candidate: _Candidate) -> None:
        assert self.places is not None
        self.places[self.request.meals.index(slot)] -= 1
        if candidate.recipe.id in self.supply.masks:
            self.supply.take(candidate.recipe.id)
            self.served += 1
            self.served_today += 1


def _supply(request: MealPlanRequest, pools: dict[Slot, list[_Candidate]]) -> CuisineSupply:
    """The asked-cuisine recipes this request allows, with the slots each fits."""
    fits: dict[str, list[Slot]] = {}
    for slot in request.meals:
        for c in pools[slot]:
            if c.recipe.cuisine in request.cuisines:
                fits.setdefault(c.recipe.id, []).append(slot)
    return CuisineSupply(request.meals, fits)


def _pick_day(
    request: MealPlanRequest,
    pools: dict[Slot, list[_Candidate]],
    order: list[Slot],
    rng: random.Random,
    used: set[str],
    blocked: set[str],
    course: _Course | None = None,
    cuisines_first: bool = False,
) -> dict[Slot, _Candidate] | None:
    """One day's recipes, slot by slot, the scarcest slot first: from the asked cuisines
    wherever one is left if ``cuisines_first``; with a ``course``, only recipes after which
    the plan can still make its asked-cuisine goal (so a scarce one is kept for the slot that
    needs it)."""
    shares = _shares(request.meals)
    today: dict[Slot, _Candidate] = {}
    proteins: set[str] = set()
    for left, slot in enumerate(order):
        candidates = [
            c
            for c in pools[slot]
            if c.recipe.id not in used
            and all(c.recipe.id != p.recipe.id for p in today.values())
            and (c.protein is None or c.protein not in blocked)
        ]
        if course is not None:
            candidates = course.allows(slot, candidates, len(order) - left)
        if cuisines_first:
            wanted = [c for c in candidates if c.recipe.cuisine in request.cuisines]
            candidates = wanted or candidates
        if not candidates:
            return None
        weights = [
            _weight(request, c, request.calories * shares[slot], proteins) for c in candidates
        ]
        pick = rng.choices(candidates, weights)[0]
        today[slot] = pick
        if course is not None:
            course.take(slot, pick)
        if pick.protein:
            proteins.add(pick.protein)
    return today


def _carries_the_day(request: MealPlanRequest, picks: Iterable[_Candidate]) -> bool:
    """Whether these dishes, within typical portions and with sides, can make the day's energy."""
    chosen = list(picks)
    most = sum(c.capacity for c in chosen)
    least = sum(c.kcal * c.dish.low for c in chosen)
    return most >= request.calories * 0.97 and least <= request.calories * 1.03


_DRAFTS: dict[tuple[str, Slot], tuple[Recipe, DraftMeal]] = {}


def _draft(recipe: Recipe, slot: Slot) -> DraftMeal:
    """One serving of ``recipe`` for ``slot``, built once per process: judging a recipe for a
    request reads only its slot and times, and building hundreds of drafts per plan was the
    catalogue planner's largest cost."""
    known = _DRAFTS.get((recipe.id, slot))
    if known is None or known[0] is not recipe:
        known = _DRAFTS[(recipe.id, slot)] = (recipe, recipe.draft(slot))
    return known[1]


_SIDES: dict[tuple[str, int], dict[Slot, list[Food]]] = {}
"""Sides per request (and table), so the pre-check and the plan judge the foods once."""


def _sides(request: MealPlanRequest, validator: PlanValidator) -> dict[Slot, list[Food]]:
    """Per slot, the plain sides this request allows (for keto, only low-carbohydrate ones)."""
    key = (request.model_dump_json(), id(validator.table))
    known = _SIDES.get(key)
    if known is None:
        if len(_SIDES) > 256:
            _SIDES.clear()
        known = _SIDES[key] = _allowed_sides(request, validator)
    return known


def _allowed_sides(request: MealPlanRequest, validator: PlanValidator) -> dict[Slot, list[Food]]:
    names = {name for slot in request.meals for name in SIDES[slot]}
    candidates = [food for food in validator.table.foods if food.name in names]
    allowed = [food for food in candidates if validator.allows(food)]
    if Diet.keto in request.diet:
        allowed = [
            food
            for food in allowed
            if max(food.per_100g.carbs - food.per_100g.fiber, 0) * 4
            <= KETO_MAX_NET_CARB_ENERGY * max(food.per_100g.kcal, 1)
        ]
    return {slot: side_foods(validator.table, slot, allowed) for slot in request.meals}


def _counts(request: MealPlanRequest, pools: dict[Slot, list[_Candidate]]) -> str:
    return ", ".join(f"{len(pools[slot])} {slot.value}" for slot in request.meals)


def _other_sides(sides: list[Food], recipe: Recipe) -> list[Food]:
    """Sides that are not already in the dish (more banana is a bigger portion, not a side)."""
    own = {i.name for i in recipe.ingredients}
    return [food for food in sides if food.name not in own]


def _side_name(food: Food) -> str:
    """ "brown rice, cooked" -> "cooked brown rice", as a cook says it."""
    head, _, qualifier = food.name.partition(", ")
    return f"{qualifier} {head}" if qualifier else head


def _with_side(draft: DraftMeal, balanced: Balanced, index: int) -> DraftMeal:
    """``draft`` with the sides the day's balance gave it, in whole 5 g."""
    sides = balanced.sides[index]
    if not sides:
        return draft
    added = []
    for food, grams in sides:
        most = max(5.0, math.floor(max_serving_grams(food) / 5) * 5)
        grams = min(max(5.0, round(grams / 5) * 5), most)
        added.append(
            DraftIngredient(name=food.name, quantity=grams, unit="g", grams=grams, food_id=food.id)
        )
    names = [_side_name(food) for food, _ in sides]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return draft.model_copy(
        update={
            "ingredients": [*draft.ingredients, *added],
            "steps": [*draft.steps, f"Serve with the {listed} on the side."],
        }
    )


def _shares(slots: Sequence[Slot]) -> dict[Slot, float]:
    total = sum(SLOT_SHARE[slot] for slot in slots)
    return {slot: SLOT_SHARE[slot] / total for slot in slots}


def _weight(
    request: MealPlanRequest, candidate: _Candidate, slot_kcal: float, today: set[str]
) -> float:
    """How much to favour a candidate: cuisine, macro split, portion size, variety within a day."""
    weight = 1.0
    if request.cuisines and candidate.recipe.cuisine in request.cuisines:
        weight *= 12.0
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
