"""The shopping list: every ingredient of the plan, merged by food and unit, grouped by aisle."""

from __future__ import annotations

from collections.abc import Iterable

from mealplan_cli.generation.foods import AISLES, FoodTable
from mealplan_cli.generation.models import Day, ShoppingItem, ShoppingSection

OTHER_AISLE = "other"

_UNIT_NAMES = {
    "teaspoon": "tsp",
    "teaspoons": "tsp",
    "tablespoon": "tbsp",
    "tablespoons": "tbsp",
    "cups": "cup",
    "pieces": "piece",
    "cloves": "clove",
    "slices": "slice",
    "cans": "can",
    "grams": "g",
    "gram": "g",
}
_IN_TABLESPOONS = {"tsp": 1 / 3}
"""Spoon measures merge: three teaspoons of chia and a tablespoon of chia are one line."""


def _unit(unit: str, quantity: float) -> tuple[str, float]:
    name = unit.strip().lower()
    name = _UNIT_NAMES.get(name, name)
    if name in _IN_TABLESPOONS:
        return "tbsp", quantity * _IN_TABLESPOONS[name]
    return name, quantity


def shopping_list(days: Iterable[Day], table: FoodTable) -> list[ShoppingSection]:
    """Meal ingredients are already for the household, so the list is too."""
    merged: dict[tuple[str, str], ShoppingItem] = {}
    aisle_of: dict[tuple[str, str], str] = {}
    for day in days:
        for meal in day.meals:
            for ingredient in meal.ingredients:
                food = table.lookup(ingredient.name)
                name = food.name if food else ingredient.name.strip().lower()
                unit, quantity = _unit(ingredient.unit, ingredient.quantity)
                key = (name, unit)
                item = merged.get(key)
                if item is None:
                    merged[key] = ShoppingItem(name=name, quantity=0, unit=unit, grams=0)
                    aisle_of[key] = food.aisle if food else OTHER_AISLE
                    item = merged[key]
                item.quantity = round(item.quantity + quantity, 2)
                item.grams = round(item.grams + ingredient.grams, 1)
    order = {aisle: index for index, aisle in enumerate((*AISLES, OTHER_AISLE))}
    sections: dict[str, list[ShoppingItem]] = {}
    for key in sorted(merged, key=lambda k: (order[aisle_of[k]], k)):
        sections.setdefault(aisle_of[key], []).append(merged[key])
    return [ShoppingSection(aisle=aisle, items=items) for aisle, items in sections.items()]
