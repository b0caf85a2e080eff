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
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mealplan_cli.generation.models import Allergen, Nutrition

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
    whole pieces piece plain unsalted lightly torn cut juiced zested""".split()
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
    return tuple(_singular(w) for w in _WORD.findall(text.lower().replace("-", " ")))


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
    """One row of the nutrition table; figures per 100 g."""

    name: str
    aliases: tuple[str, ...]
    per_100g: Nutrition
    allergens: frozenset[Allergen]
    flags: frozenset[str]
    aisle: str

    def nutrition_for(self, grams: float) -> Nutrition:
        return self.per_100g.scaled(grams / 100.0)


@dataclass(frozen=True)
class Classification:
    """What an ingredient contains, and the table entry it matched (if any)."""

    allergens: frozenset[Allergen]
    flags: frozenset[str]
    food: Food | None


# Words that give an ingredient away when the table does not know it. Each maps to the allergen
# families and diet flags it implies; the most common foods are in the table itself.
_TELLTALE: dict[str, tuple[frozenset[Allergen], frozenset[str]]] = {}


def _tell(word_list: str, allergens: Iterable[Allergen] = (), flags: Iterable[str] = ()) -> None:
    for word in word_list.split():
        _TELLTALE[_singular(word)] = (frozenset(allergens), frozenset(flags))


A = Allergen
_tell(
    "wheat flour bread breadcrumb panko pasta spaghetti linguine penne fettuccine macaroni lasagna "
    "couscous bulgur barley rye spelt seitan semolina farro khorasan kamut durum crouton cracker "
    "pita naan bagel brioche croissant udon ramen orzo gnocchi tortellini ravioli malt",
    [A.gluten],
    ["grain"],
)
_tell("oat oatmeal granola muesli", [A.gluten], ["grain"])
_tell("rice quinoa millet buckwheat corn polenta cornmeal sorghum teff amaranth", [], ["grain"])
_tell("milk cheese butter cream yogurt yoghurt ghee whey casein kefir", [A.milk], ["dairy"])
_tell(
    "parmesan parmigiano mozzarella cheddar feta ricotta halloumi paneer mascarpone brie "
    "gouda gruyere pecorino burrata labneh quark creme fraiche",
    [A.milk],
    ["dairy"],
)
_tell("egg mayonnaise mayo aioli meringue frittata omelette", [A.eggs], ["egg"])
_tell("shrimp prawn crab lobster crayfish langoustine krill", [A.crustaceans], ["shellfish"])
_tell(
    "mussel clam oyster scallop squid octopus calamari snail escargot cockle whelk",
    [A.molluscs],
    ["shellfish"],
)
_tell(
    "fish salmon tuna cod anchovy sardine mackerel trout tilapia halibut haddock pollock "
    "snapper herring swordfish catfish bass sole monkfish worcestershire bonito dashi",
    [A.fish],
    ["fish"],
)
_tell("peanut groundnut", [A.peanuts], ["legume"])
_tell(
    "almond cashew walnut pecan pistachio hazelnut macadamia brazil praline marzipan frangipane",
    [A.tree_nuts],
)
_tell("nut", [A.tree_nuts])
_tell("pesto", [A.tree_nuts, A.milk], ["dairy"])
_tell("sesame tahini halva", [A.sesame])
_tell("soy soya tofu tempeh miso edamame tamari natto", [A.soybeans], ["legume"])
_tell("celery celeriac", [A.celery])
_tell("mustard", [A.mustard])
_tell("wine sulphite sulfite", [A.sulphites], ["alcohol"])
_tell("lupin lupine", [A.lupin], ["legume"])
_tell("beef pork lamb veal venison mutton goat gelatin gelatine lard steak mince", flags=["meat"])
_tell(
    "bacon ham sausage chorizo salami pepperoni prosciutto pancetta hotdog",
    flags=["meat", "processed"],
)
_tell("chicken turkey duck goose quail", flags=["poultry"])
_tell("honey", flags=["honey"])
_tell("bean lentil chickpea pea dal dhal hummus", flags=["legume"])
_tell("sugar syrup candy caramel jam", flags=["added_sugar"])
_tell("potato plantain", flags=["starchy"])

# Words that turn a tell-tale word into something else: "almond milk" is no dairy, "butternut"
# squash is no nut, "peanut butter" no butter. Each maps the qualifier to the families it cancels.
_NEGATED_BY: dict[str, frozenset[str]] = {
    "almond": frozenset({"milk", "butter", "cream", "yogurt", "cheese"}),
    "oat": frozenset({"milk", "cream", "yogurt"}),
    "soy": frozenset({"milk", "cream", "yogurt", "cheese"}),
    "rice": frozenset({"milk"}),
    "coconut": frozenset({"milk", "cream", "yogurt", "butter", "nut"}),
    "cashew": frozenset({"milk", "cream", "cheese", "butter", "yogurt"}),
    "peanut": frozenset({"butter"}),
    "sunflower": frozenset({"butter"}),
    "cocoa": frozenset({"butter"}),
    "shea": frozenset({"butter"}),
    "vegan": frozenset({"milk", "cheese", "butter", "cream", "yogurt", "mayonnaise", "mayo"}),
    "plant": frozenset({"milk", "cheese", "butter", "cream", "yogurt"}),
    "dairy": frozenset({"milk", "cheese", "butter", "cream", "yogurt"}),
    "tartar": frozenset({"cream"}),
    "gluten": frozenset({"bread", "pasta", "flour", "oat", "spaghetti", "cracker"}),
    "nutmeg": frozenset(),
    "egg": frozenset(),
}
_NEGATORS_SPANNING = {"dairy", "gluten"}  # "dairy-free cheese", "gluten-free pasta"


class FoodTable:
    """The nutrition table, indexed for lookups by name, alias and contained phrase."""

    def __init__(self, foods: Iterable[Food]) -> None:
        self.foods = list(foods)
        self._by_name = {food.name: food for food in self.foods}
        self._by_key: dict[str, Food] = {}
        self._by_phrase: dict[tuple[str, ...], Food] = {}
        for food in self.foods:
            for label in (food.name, *food.aliases):
                self._by_key.setdefault(lookup_key(label), food)
                phrase = tuple(w for w in words(label) if w not in _PREPARATION_WORDS)
                if phrase:
                    self._by_phrase.setdefault(phrase, food)
        self._longest_phrase = max((len(p) for p in self._by_phrase), default=0)
        self._classified: dict[str, Classification] = {}

    def __len__(self) -> int:
        return len(self.foods)

    def get(self, name: str) -> Food:
        """The entry named exactly ``name`` (catalogue recipes must use these names)."""
        return self._by_name[name]

    def lookup(self, name: str) -> Food | None:
        """The entry for ``name``, forgiving word order, plurals and preparation words."""
        return self._by_key.get(lookup_key(name))

    def classify(self, name: str) -> Classification:
        """Allergens and diet flags of ``name``; errs towards finding too many, never too few."""
        found = self._classified.get(name)
        if found is None:
            found = self._classify(name)
            self._classified[name] = found
        return found

    def _classify(self, name: str) -> Classification:
        food = self.lookup(name)
        if food is not None:
            return Classification(food.allergens, food.flags, food)
        tokens = [w for w in words(name) if w not in _PREPARATION_WORDS]
        allergens: set[Allergen] = set()
        flags: set[str] = set()
        contained = self._contained_foods(tokens)
        for found in contained:
            allergens |= found.allergens
            flags |= found.flags
        for index, token in enumerate(tokens):
            implied = _TELLTALE.get(token)
            if implied is None or self._negated(tokens, index):
                continue
            allergens |= implied[0]
            flags |= implied[1]
        if "free" in tokens:
            allergens, flags = self._drop_free_from(tokens, allergens, flags)
        return Classification(frozenset(allergens), frozenset(flags), None)

    def _contained_foods(self, tokens: list[str]) -> list[Food]:
        """Foods whose name or alias appears as a run of whole words in ``tokens``."""
        found: list[Food] = []
        for size in range(min(self._longest_phrase, len(tokens)), 0, -1):
            for start in range(len(tokens) - size + 1):
                food = self._by_phrase.get(tuple(tokens[start : start + size]))
                if food is not None and not self._negated(tokens, start):
                    found.append(food)
        return found

    @staticmethod
    def _negated(tokens: list[str], index: int) -> bool:
        word = tokens[index]
        before = tokens[:index]
        if any(word in _NEGATED_BY.get(q, frozenset()) for q in before):
            return True
        return any(q in _NEGATORS_SPANNING and word in _NEGATED_BY[q] for q in tokens[index + 1 :])

    @staticmethod
    def _drop_free_from(
        tokens: list[str], allergens: set[Allergen], flags: set[str]
    ) -> tuple[set[Allergen], set[str]]:
        """Honour "gluten free bread", "dairy free cheese", "egg free mayo"."""
        freed = {tokens[i - 1] for i, t in enumerate(tokens) if t == "free" and i > 0}
        if "gluten" in freed:
            allergens.discard(Allergen.gluten)
        if "dairy" in freed or "lactose" in freed:
            allergens.discard(Allergen.milk)
            flags.discard("dairy")
        if "egg" in freed:
            allergens.discard(Allergen.eggs)
            flags.discard("egg")
        if "nut" in freed:
            allergens.discard(Allergen.tree_nuts)
        return allergens, flags


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
    flags: list[str] = Field(default_factory=list)
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
        )


def data_files(prefix: str) -> list[str]:
    """The JSON texts of the bundled data files whose names start with ``prefix``."""
    folder = resources.files("mealplan_cli.generation") / "data"
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
