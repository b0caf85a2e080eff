"""The nutrition table and the deterministic reading of ingredient names.

Two questions are asked of every ingredient a planner writes, whoever the planner is:

* *What is it, nutritionally?* ``FoodTable.lookup`` finds the table entry by name or alias,
  forgiving word order, plurals and preparation words ("finely chopped red onions"), and nothing
  looser: a wrong nutrition match is worse than none, because an unknown ingredient must then pass
  the energy check on the planner's own figures.
* *What does it contain?* ``FoodTable.classify`` answers with allergen families and diet flags. It
  is deliberately looser, because a missed allergen is the worst outcome: after an exact lookup it
  looks for the longest known food named inside the ingredient ("toasted sesame oil" contains
  "sesame oil"), then for tell-tale words ("tahini", "prawns", "parmesan").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from importlib import resources
from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mealplan_cli.mealplans.generation.lexicon import FREE_FROM, LEXICON
from mealplan_cli.mealplans.generation.models import Nutrition
from mealplan_cli.mealplans.generation.text import normalise
from mealplan_cli.mealplans.generation.vocabulary import Allergen

DIET_FLAGS = frozenset(
    {
        "meat",
        "poultry",
        "fish",
        "shellfish",
        "dairy",
        "egg",
        "honey",
        "grain",
        "legume",
        "added_sugar",
        "starchy",
        "processed",
        "alcohol",
        "rennet",
    }
)

AISLES = (
    "produce",
    "meat & fish",
    "dairy & eggs",
    "bakery",
    "grains & pasta",
    "canned & jarred",
    "nuts & seeds",
    "oils, sauces & condiments",
    "spices & herbs",
    "baking & sweeteners",
    "plant-based & tofu",
    "frozen",
    "drinks",
)

_PREPARATION_WORDS = frozenset(
    """a an and the of to or for with into about approximately optional taste fresh freshly
    chopped diced minced sliced cubed grated shredded peeled crushed finely roughly thinly coarsely
    large small medium big baby organic toasted halved quartered trimmed rinsed drained packed
    whole pieces piece plain unsalted lightly torn cut juiced zested julienned mashed melted
    softened beaten whisked deseeded thawed warmed chilled cored spiralized flaked pureed grilled
    sauteed boiled poached shaved squeezed""".split()
)

_WORD = re.compile(r"[a-z0-9%]+")


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("oes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


@lru_cache(maxsize=16384)
def _words(text: str) -> tuple[str, ...]:
    return tuple(_singular(w) for w in _WORD.findall(normalise(text).replace("-", " ")))


def words(text: str) -> list[str]:
    """Lowercase singular words of ``text``, hyphens and punctuation dropped."""
    return list(_words(text))


@lru_cache(maxsize=16384)
def lookup_key(text: str) -> str:
    """The order-free key shared by two spellings ("cooked chickpeas", "chickpeas, cooked")."""
    kept = sorted(w for w in words(text) if w not in _PREPARATION_WORDS)
    return " ".join(kept)


@dataclass(frozen=True)
class Food:
    """One row of the nutrition table; figures per 100 g.

    ``allergens`` is everything a check must keep away from an allergic user: what the food
    contains, what it may contain (``may_contain``: barley in miso, wheat in tamari, gluten in
    oats by cross-contact) and what its ingredients contain (``contains``: the base foods of a
    prepared one, salsa's onion, pesto's garlic). ``may_contain`` and ``contains`` are kept as
    well, to say why.
    """

    name: str
    aliases: tuple[str, ...]
    per_100g: Nutrition
    allergens: frozenset[Allergen]
    flags: frozenset[str]
    aisle: str
    may_contain: frozenset[Allergen] = frozenset()
    contains: tuple[str, ...] = ()
    relatives: tuple[str, ...] = ()
    components: frozenset[str] = field(default=frozenset(), compare=False)
    """Names of every base food inside this one, through prepared foods inside it too."""

    @property
    def id(self) -> str:
        """The stable id a model chooses the food by (``food_id`` in the OpenAI day schema)."""
        return food_id(self.name)

    def nutrition_for(self, grams: float) -> Nutrition:
        return self.per_100g.scaled(grams / 100.0)


def food_id(name: str) -> str:
    """``"greek yogurt, nonfat"`` -> ``"greek_yogurt_nonfat"``; ``"2% milk"`` -> ``"2pct_milk"``."""
    return "_".join(re.findall(r"[a-z0-9]+", name.lower().replace("%", "pct")))


@dataclass(frozen=True)
class Hit:
    """A phrase found in a text, and what it implies."""

    phrase: str
    allergens: frozenset[Allergen]
    flags: frozenset[str]


@dataclass(frozen=True)
class Classification:
    """What a text contains: allergens, diet flags, the phrases that said so, and the table
    entry the whole text names (if it names one)."""

    allergens: frozenset[Allergen]
    flags: frozenset[str]
    food: Food | None
    hits: tuple[Hit, ...] = ()


_MIN_COMPOUND_PART = 3


class FoodTable:
    """The nutrition table, indexed for lookups by name, alias, id and contained phrase."""

    def __init__(self, foods: Iterable[Food]) -> None:
        self.foods = _composed(list(foods))
        self._by_name = {food.name: food for food in self.foods}
        self._by_id: dict[str, Food] = {}
        self._by_key: dict[str, Food] = {}
        phrases: dict[tuple[str, ...], tuple[set[Allergen], set[str]]] = {}
        for food in self.foods:
            if food.id in self._by_id:
                raise ValueError(f"two foods share the id {food.id!r}")
            self._by_id[food.id] = food
            for label in (food.name, *food.aliases):
                self._by_key.setdefault(lookup_key(label), food)
                phrase = _phrase(label)
                if phrase:
                    allergens, flags = phrases.setdefault(phrase, (set(), set()))
                    allergens |= food.allergens
                    flags |= food.flags
        for text, (allergens_, flags_) in LEXICON.items():
            phrase = _phrase(text)
            if phrase:
                allergens, flags = phrases.setdefault(phrase, (set(), set()))
                allergens |= allergens_
                flags |= flags_
        for text in FREE_FROM:  # a listed free-from form means what it says, nothing more
            phrase = _phrase(text)
            if phrase:
                phrases[phrase] = (set(FREE_FROM[text][0]), set(FREE_FROM[text][1]))
        self._phrases = {p: (frozenset(a), frozenset(f)) for p, (a, f) in phrases.items()}
        self._longest_phrase = max((len(p) for p in self._phrases), default=0)
        self._classified: dict[str, Classification] = {}

    def __len__(self) -> int:
        return len(self.foods)

    def get(self, name: str) -> Food:
        """The entry named exactly ``name`` (catalogue recipes must use these names)."""
        return self._by_name[name]

    def by_id(self, food_id: str) -> Food | None:
        return self._by_id.get(food_id)

    def lookup(self, name: str) -> Food | None:
        """The entry for ``name``, forgiving word order, plurals and preparation words."""
        return self._by_key.get(lookup_key(name))

    def classify(self, text: str) -> Classification:
        """Allergens and diet flags of ``text``; errs towards finding too many, never too few."""
        found = self._classified.get(text)
        if found is None:
            found = self._classify(text)
            if len(self._classified) < 65536:
                self._classified[text] = found
        return found

    def _classify(self, text: str) -> Classification:
        food = self.lookup(text)
        hits = self.scan(text)
        allergens: set[Allergen] = set(food.allergens) if food else set()
        flags: set[str] = set(food.flags) if food else set()
        for hit in hits:
            allergens |= hit.allergens
            flags |= hit.flags
        return Classification(frozenset(allergens), frozenset(flags), food, tuple(hits))

    def scan(self, text: str) -> list[Hit]:
        """Every known phrase in ``text``, longest first, left to right.

        A run of words that names a phrase is read as that phrase ("almond milk", "peanut
        butter"); the words of a phrase not listed are read one by one, so a qualifier cannot
        cancel an allergen. A word that is two known words run together ("almondmilk",
        "peanutbutter") is read as both.
        """
        tokens = [w for w in words(text) if w not in _PREPARATION_WORDS]
        hits: list[Hit] = self._split_words(tokens)
        index = 0
        while index < len(tokens):
            for size in range(min(self._longest_phrase, len(tokens) - index), 0, -1):
                phrase = tuple(tokens[index : index + size])
                entry = self._phrases.get(phrase)
                if entry is not None:
                    if entry[0] or entry[1]:
                        hits.append(Hit(" ".join(phrase), entry[0], entry[1]))
                    index += size
                    break
            else:
                hits += self._compound(tokens[index])
                index += 1
        return hits

    def _split_words(self, tokens: list[str]) -> list[Hit]:
        """Hits for a known word split in two ("pea-nut", "sesa me"), read as well as its parts."""
        hits = []
        for first, second in pairwise(tokens):
            if (first, second) in self._phrases:
                continue
            joined = first + second
            entry = self._phrases.get((joined,)) or self._phrases.get((_singular(joined),))
            if entry is not None and (entry[0] or entry[1]):
                hits.append(Hit(joined, entry[0], entry[1]))
        return hits

    def _compound(self, token: str) -> list[Hit]:
        """Hits for a word made of two known words run together, else none."""
        for cut in range(_MIN_COMPOUND_PART, len(token) - _MIN_COMPOUND_PART + 1):
            head, tail = token[:cut], _singular(token[cut:])
            whole = self._phrases.get((head, tail))
            if whole is not None:
                return [Hit(f"{head} {tail}", whole[0], whole[1])]
            first, second = self._phrases.get((head,)), self._phrases.get((tail,))
            if first is not None and second is not None:
                return [
                    Hit(part, entry[0], entry[1])
                    for part, entry in ((head, first), (tail, second))
                    if entry[0] or entry[1]
                ]
        return []


def _composed(foods: list[Food]) -> list[Food]:
    """``foods`` with what each prepared food contains worked out through every level (a
    caesar dressing's worcestershire sauce's anchovies), and those foods' allergens added to
    its own, so that no check needs to know a food is prepared."""
    by_name = {food.name: food for food in foods}
    for food in foods:
        for name in (*food.contains, *food.relatives):
            if name not in by_name:
                raise ValueError(f"{food.name!r} names the unknown food {name!r}")
    closed: dict[str, frozenset[str]] = {}

    def inside(name: str, path: tuple[str, ...]) -> frozenset[str]:
        if name in path:
            raise ValueError(f"{name!r} contains itself ({' > '.join((*path, name))})")
        if name not in closed:
            found: set[str] = set()
            for part in by_name[name].contains:
                found |= {part} | inside(part, (*path, name))
            closed[name] = frozenset(found)
        return closed[name]

    result = []
    for food in foods:
        components = inside(food.name, ())
        allergens = set(food.allergens) | set(food.may_contain)
        for part in components:
            allergens |= by_name[part].allergens | by_name[part].may_contain
        result.append(replace(food, allergens=frozenset(allergens), components=components))
    return result


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(w for w in words(text) if w not in _PREPARATION_WORDS)


class FoodRow(BaseModel):
    """One row of an ``ingredients*.json`` file, as ``data/FORMAT.md`` defines it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    aliases: list[str] = Field(default_factory=list)
    kcal: float = Field(ge=0)
    protein: float = Field(ge=0)
    carbs: float = Field(ge=0)
    fat: float = Field(ge=0)
    fiber: float = Field(ge=0)
    allergens: list[Allergen] = Field(default_factory=list)
    may_contain: list[Allergen] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    contains: list[str] = Field(default_factory=list)
    relatives: list[str] = Field(default_factory=list)
    aisle: str

    @field_validator("flags")
    @classmethod
    def _known_flags(cls, value: list[str]) -> list[str]:
        unknown = set(value) - DIET_FLAGS
        if unknown:
            raise ValueError(f"unknown diet flags {sorted(unknown)}")
        return value

    @field_validator("aisle")
    @classmethod
    def _known_aisle(cls, value: str) -> str:
        if value not in AISLES:
            raise ValueError(f"unknown aisle {value!r}")
        return value

    def to_food(self) -> Food:
        return Food(
            name=self.name,
            aliases=tuple(self.aliases),
            per_100g=Nutrition(
                kcal=self.kcal,
                protein=self.protein,
                carbs=self.carbs,
                fat=self.fat,
                fiber=self.fiber,
            ),
            allergens=frozenset(self.allergens),
            flags=frozenset(self.flags),
            aisle=self.aisle,
            may_contain=frozenset(self.may_contain),
            contains=tuple(self.contains),
            relatives=tuple(self.relatives),
        )


def data_files(prefix: str) -> list[str]:
    """The JSON texts of the bundled data files whose names start with ``prefix``."""
    folder = resources.files("mealplan_cli.mealplans.generation") / "data"
    names = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name.startswith(prefix) and entry.name.endswith(".json")
    )
    return [(folder / name).read_text(encoding="utf-8") for name in names]


@cache
def default_table() -> FoodTable:
    """The bundled nutrition table, loaded once per process."""
    rows = [row for text in data_files("ingredients") for row in json.loads(text)]
    return FoodTable(FoodRow.model_validate(row).to_food() for row in rows)
