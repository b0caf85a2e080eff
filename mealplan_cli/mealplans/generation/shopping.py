"""The shopping list: one line per food for the whole plan, in one unit, grouped by aisle.

Uses of a food in different units (a cup of oats here, 40 g there) are converted into the unit
that carries most of it, at the density the recipes themselves give (their grams per unit), and
the total is written as a cook would: whole pinches, cans and pieces, grams to 5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from mealplan_cli.mealplans.generation.foods import AISLES, FoodTable
from mealplan_cli.mealplans.generation.models import Day, ShoppingItem, ShoppingSection
from mealplan_cli.mealplans.generation.portions import WHOLE_UNITS, kitchen_amount, unit_name

OTHER_AISLE = "other"


@dataclass
class _Uses:
    aisle: str
    grams: float = 0.0
    by_unit: dict[str, list[float]] = field(default_factory=dict)  # unit -> [quantity, grams]

    def add(self, unit: str, quantity: float, grams: float) -> None:
        total = self.by_unit.setdefault(unit, [0.0, 0.0])
        total[0] += quantity
        total[1] += grams
        self.grams += grams

    def line(self, name: str) -> ShoppingItem:
        unit, (quantity, grams) = max(self.by_unit.items(), key=lambda kv: (kv[1][1], kv[0]))
        per_unit = grams / quantity if quantity > 0 and grams > 0 else 0.0
        amount = self.grams / per_unit if per_unit > 0 else quantity
        grams_total = float(max(5, round(self.grams / 5) * 5))
        if unit == "g":
            amount = grams_total
        elif unit in WHOLE_UNITS or unit in ("piece", "stalk"):
            amount = float(math.ceil(amount - 1e-9))  # buy whole ones
        else:
            unit, amount = _larger_measure(unit, amount)
            amount = kitchen_amount(amount, unit)
        return ShoppingItem(name=name, quantity=amount, unit=unit, grams=grams_total)


def _larger_measure(unit: str, amount: float) -> tuple[str, float]:
    """18 tsp is 6 tbsp; 12 tbsp is 3/4 cup."""
    if unit == "tsp" and amount >= 3:
        unit, amount = "tbsp", amount / 3
    if unit == "tbsp" and amount >= 8:
        unit, amount = "cup", amount / 16
    return unit, amount


def shopping_list(days: Iterable[Day], table: FoodTable) -> list[ShoppingSection]:
    """Meal ingredients are already for the household, so the list is too."""
    uses: dict[str, _Uses] = {}
    for day in days:
        for meal in day.meals:
            for ingredient in meal.ingredients:
                food = table.by_id(ingredient.food_id) if ingredient.food_id else None
                food = food or table.lookup(ingredient.name)
                name = food.name if food else ingredient.name.strip().lower()
                if name not in uses:
                    uses[name] = _Uses(food.aisle if food else OTHER_AISLE)
                uses[name].add(unit_name(ingredient.unit), ingredient.quantity, ingredient.grams)
    order = {aisle: index for index, aisle in enumerate((*AISLES, OTHER_AISLE))}
    sections: dict[str, list[ShoppingItem]] = {}
    for name in sorted(uses, key=lambda n: (order[uses[n].aisle], n)):
        sections.setdefault(uses[name].aisle, []).append(uses[name].line(name))
    return [ShoppingSection(aisle=aisle, items=items) for aisle, items in sections.items()]
