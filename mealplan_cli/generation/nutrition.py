"""The energy check the nutrition table's rows must pass (a planner's own figures are never
used: nutrition always comes from the table, by food)."""

from __future__ import annotations

ATWATER_TOLERANCE = 0.15
"""A food whose stated energy is more than this far off 4P + 4C + 9F is suspect (APIS.md)."""

_SMALL_KCAL = 15.0
"""Below this, a relative tolerance means nothing (a pinch of spice); compare absolutely."""


def atwater_kcal(protein: float, carbs: float, fat: float) -> float:
    return 4 * protein + 4 * carbs + 9 * fat


def passes_atwater(kcal: float, protein: float, carbs: float, fat: float) -> bool:
    """Whether ``kcal`` agrees with the energy the macronutrients imply."""
    expected = atwater_kcal(protein, carbs, fat)
    if max(kcal, expected) < _SMALL_KCAL:
        return abs(kcal - expected) < _SMALL_KCAL
    return abs(kcal - expected) <= ATWATER_TOLERANCE * max(kcal, expected)
