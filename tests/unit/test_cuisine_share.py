"""The bound on asked-cuisine meals: the minimum cut over slot subsets equals the largest
matching of open places to distinct recipes, whatever slots the recipes fit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mealplan_cli.mealplans.generation.cuisine_share import CuisineSupply
from mealplan_cli.mealplans.generation.vocabulary import Slot

SLOTS = (Slot.breakfast, Slot.lunch, Slot.dinner, Slot.snack)


def matching(places: list[int], fits: dict[str, frozenset[int]]) -> int:
    """The largest assignment of recipes to open places, by augmenting paths."""
    seats = [(slot, k) for slot, n in enumerate(places) for k in range(n)]
    holder: dict[tuple[int, int], str] = {}

    def place(recipe: str, seen: set[tuple[int, int]]) -> bool:
        for seat in seats:
            if seat[0] in fits[recipe] and seat not in seen:
                seen.add(seat)
                if seat not in holder or place(holder[seat], seen):
                    holder[seat] = recipe
                    return True
        return False

    return sum(place(recipe, set()) for recipe in fits)


@given(
    places=st.lists(st.integers(0, 4), min_size=4, max_size=4),
    fits=st.lists(st.frozensets(st.integers(0, 3), min_size=1), max_size=12),
)
def test_the_bound_is_the_largest_matching(places: list[int], fits: list[frozenset[int]]) -> None:
    recipes = {f"r{i}": where for i, where in enumerate(fits)}
    supply = CuisineSupply(SLOTS, {r: [SLOTS[i] for i in w] for r, w in recipes.items()})
    assert supply.bound(places) == matching(places, recipes)


def test_a_served_recipe_leaves_the_supply() -> None:
    supply = CuisineSupply(SLOTS[:3], {"a": [Slot.breakfast], "b": [Slot.breakfast, Slot.lunch]})
    assert supply.bound([2, 2, 2]) == 2
    assert supply.bound([2, 2, 2], without=supply.masks["a"]) == 1
    supply.take("b")
    assert supply.bound([2, 2, 2]) == 1
    assert supply.per_slot() == [1, 0, 0]
