"""The words a request is made of: meal slots, diets, allergen families and their aliases.

Kept apart from the pydantic models so that ``--help`` can list them without importing pydantic.
"""

from __future__ import annotations

from enum import StrEnum


class Slot(StrEnum):
    breakfast = "breakfast"
    lunch = "lunch"
    dinner = "dinner"
    snack = "snack"


SLOT_ORDER = list(Slot)


class Diet(StrEnum):
    omnivore = "omnivore"
    vegetarian = "vegetarian"
    vegan = "vegan"
    pescatarian = "pescatarian"
    keto = "keto"
    paleo = "paleo"
    mediterranean = "mediterranean"
    gluten_free = "gluten_free"
    dairy_free = "dairy_free"


class Allergen(StrEnum):
    """The EU's 14 allergen families (US major allergens are a subset of these)."""

    gluten = "gluten"
    crustaceans = "crustaceans"
    eggs = "eggs"
    fish = "fish"
    peanuts = "peanuts"
    soybeans = "soybeans"
    milk = "milk"
    tree_nuts = "tree_nuts"
    celery = "celery"
    mustard = "mustard"
    sesame = "sesame"
    sulphites = "sulphites"
    lupin = "lupin"
    molluscs = "molluscs"


ALLERGEN_ALIASES: dict[str, tuple[Allergen, ...]] = {
    "wheat": (Allergen.gluten,),
    "cereals": (Allergen.gluten,),
    "shellfish": (Allergen.crustaceans, Allergen.molluscs),
    "seafood": (Allergen.fish, Allergen.crustaceans, Allergen.molluscs),
    "crustacean": (Allergen.crustaceans,),
    "egg": (Allergen.eggs,),
    "peanut": (Allergen.peanuts,),
    "soy": (Allergen.soybeans,),
    "soya": (Allergen.soybeans,),
    "dairy": (Allergen.milk,),
    "lactose": (Allergen.milk,),
    "nuts": (Allergen.tree_nuts, Allergen.peanuts),
    "nut": (Allergen.tree_nuts, Allergen.peanuts),
    "tree_nut": (Allergen.tree_nuts,),
    "treenuts": (Allergen.tree_nuts,),
    "sulfites": (Allergen.sulphites,),
    "sulphite": (Allergen.sulphites,),
    "sulfite": (Allergen.sulphites,),
    "mollusc": (Allergen.molluscs,),
    "mollusks": (Allergen.molluscs,),
    "mollusk": (Allergen.molluscs,),
}
"""Other words for allergen families. An alias widens, never narrows: "shellfish" is both
crustaceans and molluscs, "nuts" both tree nuts and peanuts."""


def allergen_families(word: str) -> tuple[Allergen, ...] | None:
    """The families ``word`` names (an allergen key or an alias), or ``None``."""
    key = word.strip().lower().replace("-", "_").replace(" ", "_")
    if key in Allergen.__members__:
        return (Allergen(key),)
    return ALLERGEN_ALIASES.get(key)


def alias_help() -> str:
    """The aliases as one line, for ``--help`` and error messages."""
    return "; ".join(
        f"{alias} = {' + '.join(a.value for a in families)}"
        for alias, families in ALLERGEN_ALIASES.items()
    )
