"""Portions and sides for one catalogue day: on the calorie target, each food within a typical
serving, and the protein/carbs/fat split as near the request as the allowed foods can bring it.

A day is a few dishes (catalogue recipes, each scalable between ``low`` and ``high`` servings,
``high`` set by ``portions.portion_limit``) and, per meal, up to ``MAX_SIDES`` sides: plain
foods the request allows (rice, bread, yogurt, nuts, fruit...). Energy is moved between them in
steps, so the day always keeps its target: a move takes some kcal from one item and gives them
to another, and is kept only if it brings the macro split closer to the request. Without a
macro request, sides only make up energy the dishes cannot carry within their limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mealplan_cli.mealplans.generation.foods import Food, FoodTable
from mealplan_cli.mealplans.generation.models import Nutrition
from mealplan_cli.mealplans.generation.portions import max_serving_grams
from mealplan_cli.mealplans.generation.request import MacroSplit
from mealplan_cli.mealplans.generation.vocabulary import Slot

SIDES: dict[Slot, tuple[str, ...]] = {
    Slot.breakfast: (
        "banana",
        "apple",
        "whole wheat bread",
        "gluten-free bread",
        "greek yogurt, nonfat",
        "skyr",
        "cottage cheese",
        "unsweetened soy yogurt",
        "egg",
        "almonds",
        "walnuts",
        "peanut butter",
        "avocado",
        "blueberries",
        "orange",
        "smoked salmon",
        "pumpkin seeds",
        "gluten-free oats",
        "hemp seeds",
    ),
    Slot.lunch: (
        "brown rice, cooked",
        "quinoa, cooked",
        "whole wheat bread",
        "gluten-free bread",
        "potato",
        "chicken breast",
        "canned tuna",
        "extra-firm tofu",
        "edamame",
        "egg",
        "lentils, cooked",
        "chickpeas, cooked",
        "avocado",
        "almonds",
        "olive oil",
        "apple",
        "cottage cheese",
        "greek yogurt, nonfat",
        "smoked tofu",
        "pumpkin seeds",
        "tempeh",
    ),
    Slot.dinner: (
        "brown rice, cooked",
        "quinoa, cooked",
        "sweet potato",
        "whole wheat bread",
        "gluten-free bread",
        "chicken breast",
        "salmon fillet",
        "extra-firm tofu",
        "edamame",
        "tempeh",
        "lentils, cooked",
        "black beans, cooked",
        "avocado",
        "olive oil",
        "almonds",
        "cod fillet",
        "shrimp",
        "egg",
        "smoked tofu",
        "pumpkin seeds",
    ),
    Slot.snack: (
        "apple",
        "banana",
        "almonds",
        "walnuts",
        "greek yogurt, nonfat",
        "skyr",
        "cottage cheese",
        "edamame",
        "peanut butter",
        "pumpkin seeds",
        "rice cakes",
        "orange",
        "hemp seeds",
        "unsweetened soy yogurt",
        "dark chocolate",
        "hummus",
    ),
}
"""Plain foods that can sit beside any dish of a slot, in order of preference."""

MACRO_TOLERANCE = 5.0
"""Each day's protein, carbs and fat energy shares must be within this many points of the
request, or the plan says the split was declined for that day."""

MAX_SIDES = 3
"""Sides one meal may have: a big appetite eats more dishes, not a 450 g steak."""

MEAL_SHIFT = 0.25
"""How far steering the split may move a meal's energy from what it had on target: a 35% protein
vegan day took breakfast down to 145 kcal and dinner up to 1,300 without it."""

_STEPS = (160.0, 80.0, 40.0, 20.0, 10.0)
_MIN_SIDE_KCAL = 40.0


@dataclass(frozen=True)
class Dish:
    """One serving of a dish, and how far it may be scaled."""

    nutrition: Nutrition
    low: float
    high: float


@dataclass
class Balanced:
    """Per meal: the dish's portion factor and its sides (food, grams)."""

    portions: list[float]
    sides: list[list[tuple[Food, float]]]


def shares(n: Nutrition) -> tuple[float, float, float]:
    """Percent of macronutrient energy from protein, carbohydrate and fat."""
    energy = 4 * n.protein + 4 * n.carbs + 9 * n.fat
    if energy <= 0:
        return (0.0, 0.0, 0.0)
    return (400 * n.protein / energy, 400 * n.carbs / energy, 900 * n.fat / energy)


def within(got: tuple[float, float, float], macros: MacroSplit) -> bool:
    asked = (macros.protein, macros.carbs, macros.fat)
    return all(abs(g - a) <= MACRO_TOLERANCE for g, a in zip(got, asked, strict=True))


@dataclass
class _Item:
    meal: int
    kcal_per_unit: float  # a unit is one serving for a dish, one gram for a side
    macro_per_kcal: tuple[float, float, float]  # protein, carb and fat energy per kcal
    low: float  # kcal
    high: float  # kcal
    kcal: float
    side: Food | None = None


def _vector(n: Nutrition) -> tuple[float, float, float]:
    kcal = max(n.kcal, 1e-9)
    return (4 * n.protein / kcal, 4 * n.carbs / kcal, 9 * n.fat / kcal)


def side_foods(table: FoodTable, slot: Slot, allowed: Sequence[Food]) -> list[Food]:
    """The sides of ``slot`` among the foods the request allows, in preference order."""
    names = {food.name for food in allowed}
    return [table.get(name) for name in SIDES[slot] if name in names]


def balance(
    target: float,
    dishes: Sequence[Dish],
    portions: Sequence[float],
    sides: Sequence[Sequence[Food]],
    macros: MacroSplit | None,
) -> Balanced:
    """Portions (and sides) that put the day on ``target`` kcal, each dish within its limits,
    and the macro split as near ``macros`` as these moves can bring it."""
    items = [
        _Item(
            meal=i,
            kcal_per_unit=d.nutrition.kcal,
            macro_per_kcal=_vector(d.nutrition),
            low=d.low * d.nutrition.kcal,
            high=d.high * d.nutrition.kcal,
            kcal=min(max(p, d.low), d.high) * d.nutrition.kcal,
        )
        for i, (d, p) in enumerate(zip(dishes, portions, strict=True))
    ]
    for meal, options in enumerate(sides):
        for food in options:
            per_gram = food.per_100g.kcal / 100
            if per_gram <= 0:
                continue
            items.append(
                _Item(
                    meal=meal,
                    kcal_per_unit=per_gram,
                    macro_per_kcal=_vector(food.per_100g),
                    low=0.0,
                    high=max_serving_grams(food) * per_gram,
                    kcal=0.0,
                    side=food,
                )
            )
    _fill(items, target)
    if macros is not None:
        _steer(items, (macros.protein, macros.carbs, macros.fat))
    result = Balanced(
        portions=[items[i].kcal / items[i].kcal_per_unit for i in range(len(dishes))],
        sides=[[] for _ in dishes],
    )
    for item in items[len(dishes) :]:
        if item.kcal >= 1e-6 and item.side is not None:
            result.sides[item.meal].append((item.side, item.kcal / item.kcal_per_unit))
    return result


def _sides_used(items: list[_Item], meal: int) -> int:
    return sum(1 for i in items if i.meal == meal and i.side is not None and i.kcal > 0)


def _fill(items: list[_Item], target: float) -> None:
    """Make up (or take off) energy so the day is on target: dishes first, within their
    limits, then the first side of each meal that can carry it."""
    dishes = [i for i in items if i.side is None]
    gap = target - sum(i.kcal for i in items)
    if gap < 0:
        room = sum(i.kcal - i.low for i in dishes)
        for item in dishes:
            if room > 0:
                item.kcal -= -gap * (item.kcal - item.low) / room
        return
    room = sum(i.high - i.kcal for i in dishes)
    if room >= gap:
        for item in dishes:
            if room > 0:
                item.kcal += gap * (item.high - item.kcal) / room
        return
    for item in dishes:
        item.kcal = item.high
    gap -= room
    for _ in range(MAX_SIDES):
        for meal in range(len(dishes)):
            if gap <= 0:
                return
            unused = [i for i in items if i.side is not None and i.meal == meal and i.kcal == 0]
            side = max(unused, key=lambda i: i.high, default=None)  # the fewest sides
            if side is not None:
                side.kcal = min(side.high, max(gap, _MIN_SIDE_KCAL))
                gap -= side.kcal


def _error(totals: list[float], asked: tuple[float, float, float]) -> float:
    energy = sum(totals)
    if energy <= 0:
        return float("inf")
    excess = [
        max(abs(100 * t / energy - a) - MACRO_TOLERANCE + 1.0, 0.0)
        for t, a in zip(totals, asked, strict=True)
    ]
    drift = sum((100 * t / energy - a) ** 2 for t, a in zip(totals, asked, strict=True))
    return 1000 * sum(e * e for e in excess) + drift


def _steer(items: list[_Item], asked: tuple[float, float, float]) -> None:
    """Move energy between items while it brings the split closer to ``asked``."""
    totals = [sum(i.kcal * i.macro_per_kcal[m] for i in items) for m in range(3)]
    best = _error(totals, asked)
    meal_kcal: dict[int, float] = {}
    for item in items:
        meal_kcal[item.meal] = meal_kcal.get(item.meal, 0.0) + item.kcal
    floor = {meal: kcal * (1 - MEAL_SHIFT) for meal, kcal in meal_kcal.items()}
    ceiling = {meal: kcal * (1 + MEAL_SHIFT) for meal, kcal in meal_kcal.items()}
    for step in _STEPS:
        improved = True
        rounds = 0
        while improved and rounds < 200:
            improved = False
            rounds += 1
            choice: tuple[float, _Item, _Item, float] | None = None
            used = {meal: _sides_used(items, meal) for meal in {i.meal for i in items}}
            for give in items:
                if give.kcal - give.low < 1e-6:
                    continue
                for take in items:
                    if take is give or take.high - take.kcal < 1e-6:
                        continue
                    if take.side is not None and take.kcal <= 0:
                        freed = give.side is not None and give.meal == take.meal
                        if used[take.meal] - freed >= MAX_SIDES:
                            continue
                    amount = min(step, give.kcal - give.low, take.high - take.kcal)
                    if give.side is not None and give.kcal - amount < _MIN_SIDE_KCAL:
                        amount = give.kcal  # a side is served or not, never a crumb
                    if take.side is not None and take.kcal + amount < _MIN_SIDE_KCAL:
                        continue
                    if give.meal != take.meal and (
                        meal_kcal[give.meal] - amount < floor[give.meal]
                        or meal_kcal[take.meal] + amount > ceiling[take.meal]
                    ):
                        continue
                    moved = [
                        t + amount * (take.macro_per_kcal[m] - give.macro_per_kcal[m])
                        for m, t in enumerate(totals)
                    ]
                    error = _error(moved, asked)
                    if error < best - 1e-9 and (choice is None or error < choice[0]):
                        choice = (error, give, take, amount)
            if choice is not None:
                best, give, take, amount = choice
                give.kcal -= amount
                take.kcal += amount
                meal_kcal[give.meal] -= amount
                meal_kcal[take.meal] += amount
                totals = [sum(i.kcal * i.macro_per_kcal[m] for i in items) for m in range(3)]
                improved = True
