"""What a request's ``exclude`` terms forbid: allergen families, diet flags and phrases."""

from __future__ import annotations

from collections.abc import Sequence

from mealplan_cli.generation.foods import words
from mealplan_cli.generation.lexicon import PROTEIN_FAMILIES
from mealplan_cli.generation.vocabulary import Allergen, allergen_families


def read_exclusions(
    terms: Sequence[str],
) -> tuple[dict[Allergen, str], dict[str, str], list[tuple[str, tuple[str, ...]]]]:
    """Split exclusions into allergen families, diet flags and plain phrases.

    "nuts" or "dairy" excludes whole families (aliases widen as for allergies); "pork" or
    "mushrooms" excludes by name.
    """
    allergens: dict[Allergen, str] = {}
    flags: dict[str, str] = {}
    phrases: list[tuple[str, tuple[str, ...]]] = []
    flag_words = {"meat", "poultry", "fish", "shellfish", "dairy", "egg", "honey", "alcohol"}
    for term in terms:
        key = " ".join(words(term))
        for allergen in allergen_families(key) or allergen_families(term) or ():
            allergens[allergen] = term
        if key in flag_words:
            flags[key] = term
        phrases.append((term, tuple(words(term))))
        family = PROTEIN_FAMILIES.get(key)
        if family is not None and family == key:  # "pork" excludes chorizo and bacon too
            phrases += [
                (term, tuple(words(member)))
                for member, of in PROTEIN_FAMILIES.items()
                if of == family and member != key
            ]
    return allergens, flags, phrases


def contains(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    """Whether the words ``needle`` occur together, in order, in ``haystack``."""
    size = len(needle)
    return size > 0 and any(
        haystack[i : i + size] == needle for i in range(len(haystack) - size + 1)
    )
