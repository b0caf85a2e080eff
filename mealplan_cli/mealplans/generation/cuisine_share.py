"""How many meals of a plan can come from the cuisines asked for, and why not more.

A plan serves no recipe twice, so its meals from the asked cuisines are bounded by a matching of
the plan's open places (per slot) to the asked-cuisine recipes that fit each slot. With at most
four slots the bound is a minimum cut over the subsets of slots (Hall's theorem), cheap enough to
check before every pick: the catalogue planner takes a recipe only if the 2-of-3 target stays
reachable after it, so a scarce recipe goes to the slot that needs it instead of being spent
greedily on a day that had others. The same bound says, when a plan still falls short, whether
the recipes were too few (and for which slots) or the other rules stood in the way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from mealplan_cli.mealplans.generation.plan_report import CUISINE_SHARE, constraints_phrase
from mealplan_cli.mealplans.generation.proteins import MAX_DAYS_IN_A_ROW
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.vocabulary import Slot


def cuisine_target(request: MealPlanRequest) -> int:
    """Meals the asked cuisines should make: 2 of 3 of the plan, rounded up (0 if none asked)."""
    if not request.cuisines:
        return 0
    return math.ceil(CUISINE_SHARE * request.days * len(request.meals) - 1e-9)


class CuisineSupply:
    """The asked-cuisine recipes not yet served, counted by the set of slots each fits."""

    def __init__(self, slots: Sequence[Slot], fits: Mapping[str, Iterable[Slot]]) -> None:
        self.slots = tuple(slots)
        index = {slot: i for i, slot in enumerate(self.slots)}
        self.masks = {
            recipe: sum(1 << index[slot] for slot in set(where)) for recipe, where in fits.items()
        }
        self.counts: Counter[int] = Counter(self.masks.values())

    def copy(self) -> CuisineSupply:
        other = CuisineSupply.__new__(CuisineSupply)
        other.slots, other.masks, other.counts = self.slots, self.masks, Counter(self.counts)
        return other

    def take(self, recipe: str) -> None:
        """``recipe`` is served: it can serve no other place."""
        self.counts[self.masks[recipe]] -= 1

    def bound(self, places: Sequence[int], without: int = 0) -> int:
        """The most open ``places`` (per slot) that distinct unserved recipes can fill, with one
        fewer recipe of slot-set ``without`` if given: the minimum over slot subsets A of the
        places outside A plus the recipes fitting some slot in A."""
        counts = self.counts
        if without:
            counts = Counter(counts)
            counts[without] -= 1
        best = sum(places)
        for subset in range(1, 1 << len(self.slots)):
            cut = sum(p for i, p in enumerate(places) if not subset >> i & 1)
            cut += sum(n for mask, n in counts.items() if mask & subset)
            best = min(best, cut)
        return best

    def per_slot(self) -> list[int]:
        """How many unserved recipes fit each slot (a recipe may count for several)."""
        return [
            sum(n for mask, n in self.counts.items() if mask >> i & 1)
            for i in range(len(self.slots))
        ]


def asked_names(request: MealPlanRequest) -> str:
    """ "japanese or mexican"."""
    names = list(request.cuisines)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def too_few_note(request: MealPlanRequest, supply: CuisineSupply, served: int) -> str:
    """Why the plan falls short when the recipes themselves are too few: how many fit each slot,
    and the most meals they can make without serving one twice."""
    meals = request.days * len(request.meals)
    fit = constraints_phrase(request) or "this request"
    per_slot = supply.per_slot()
    slots = ", ".join(
        f"{n} for {slot.value}" for n, slot in zip(per_slot, supply.slots, strict=True)
    )
    reachable = supply.bound([request.days] * len(supply.slots))
    return (
        f"{asked_names(request)} recipes that fit {fit}: {slots} ({len(supply.masks)} "
        f"different); with no recipe served twice, at most {reachable} of {meals} meals can "
        f"come from them: {served} of {meals} served"
    )


def other_rules_note(request: MealPlanRequest, reachable: int, served: int, rule: str) -> str:
    """Why the plan falls short when the recipes were enough by count: the rule that was checked
    to stand in the way (``rule`` is one of "protein", "energy", or anything else for neither)."""
    meals = request.days * len(request.meals)
    fit = constraints_phrase(request) or "this request"
    because = {
        "protein": f"no main protein served more than {MAX_DAYS_IN_A_ROW} days in a row",
        "energy": f"{request.calories} kcal a day in typical portions",
    }.get(rule, f"{request.calories} kcal a day and varied main proteins")
    return (
        f"{asked_names(request)} recipes that fit {fit} could make {reachable} of {meals} meals "
        f"by count, but no arrangement found also keeps {because}: {served} of {meals} served"
    )
