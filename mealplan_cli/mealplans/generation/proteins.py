"""A meal's main protein: its saved name, its family, and the variety rule over days."""

from __future__ import annotations

from functools import lru_cache

from mealplan_cli.mealplans.generation.foods import words
from mealplan_cli.mealplans.generation.lexicon import PROTEIN_FAMILIES

MAX_DAYS_IN_A_ROW = 2
"""No main protein family on more consecutive days than this."""


@lru_cache(maxsize=4096)
def protein_name(protein: str | None) -> str | None:
    """The main protein as saved on a meal: lowercase singular words, or ``None``."""
    if not protein or protein.strip().lower() in {"none", "null", "n/a", ""}:
        return None
    return " ".join(words(protein)) or None


@lru_cache(maxsize=4096)
def protein_key(protein: str | None) -> str | None:
    """The protein's family ("silken tofu" and "tofu" are one), for the variety rule."""
    name = protein_name(protein)
    if name is None:
        return None
    tokens = name.split()
    for size in (3, 2, 1):
        for start in range(len(tokens) - size + 1):
            family = PROTEIN_FAMILIES.get(" ".join(tokens[start : start + size]))
            if family is not None:
                return family
    return " ".join(tokens) or None


def protein_runs(proteins_by_day: list[set[str]]) -> list[str]:
    """Every protein family that is the main protein on more days in a row than allowed."""
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
