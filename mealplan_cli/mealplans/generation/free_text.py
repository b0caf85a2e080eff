"""A meal's free text read fail-closed: every word must be known, or the meal is refused.

The allergen lexicon reads the words it knows; a word it does not know counted as nothing, so a
title "Tiramisu" or a step "add the PB&J" passed for a milk- or peanut-allergic user. No lexicon
will know every dish in every language, so the reading is turned around: each word of a title,
description, step, main protein or cuisine must be

* a word of one of the meal's own foods (its name or aliases in the table),
* an ordinary culinary or English word (``data/ordinary_words.txt``: no food or dish names), or
* a number or a measure ("180c", "2cm").

A word that is none of these is unknown, and unknown refuses the meal with the word named. A
phrase that names a table food on its own ("milk", "peanut butter") must name one of the meal's
foods, even when its words are known. A catalogue recipe's own text is reviewed data: its words
are known for that recipe (``recipe_words``), and only for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from mealplan_cli.mealplans.generation.foods import Food, FoodTable, lookup_key, words
from mealplan_cli.mealplans.generation.text import normalise

_TOKEN = re.compile(r"[^\W_]+")
_MEASURE = re.compile(r"\d+(?:[a-z]{1,3})?")
_CLAUSE_BREAK = re.compile(r"[,.;:!?()\[\]/]")
"""A food's name never runs across these ("sweet potato, white rice" names no white potato)."""
_LONGEST_LABEL = 5
"""Words in the longest run that is read as one food name."""

STAPLES = frozenset({"salt", "black_pepper"})
"""Foods a recipe may mention without listing them ("season with salt"): no allergen, no diet
fact, and an exclusion of them is still read in every text (``PlanValidator``)."""


@cache
def ordinary_words() -> frozenset[str]:
    """The bundled list of ordinary words, in the form ``words`` gives them (singular)."""
    text = (
        resources.files("mealplan_cli.mealplans.generation") / "data" / "ordinary_words.txt"
    ).read_text(encoding="utf-8")
    found: set[str] = set()
    for line in text.splitlines():
        found.update(words(line.split("#", 1)[0]))
    return frozenset(found)


@lru_cache(maxsize=16384)
def tokens(text: str) -> tuple[str, ...]:
    """The words of ``text`` as the reader sees them; a word not in plain Latin letters after
    normalisation is kept as it is, so that it reads as unknown rather than vanishing."""
    found: list[str] = []
    for raw in _TOKEN.findall(normalise(text)):
        found += words(raw) if raw.isascii() else [raw]
    return tuple(found)


def food_words(food: Food) -> frozenset[str]:
    """The words a food goes by: those of its name and aliases."""
    return _label_words(food.name, food.aliases)


@lru_cache(maxsize=4096)
def _label_words(name: str, aliases: tuple[str, ...]) -> frozenset[str]:
    return frozenset(w for label in (name, *aliases) for w in words(label))


@dataclass(frozen=True)
class Unknown:
    """A word (or a food's name) in a text that the meal cannot vouch for."""

    label: str
    word: str
    other_food: Food | None = None

    def __str__(self) -> str:
        if self.other_food is not None:
            return (
                f"{self.label} names {self.word!r} ({self.other_food.name}), which is not one "
                "of this meal's foods: name only the meal's own foods"
            )
        return (
            f"{self.label} says {self.word!r}, which is neither one of this meal's foods nor "
            "an ordinary word: call each food by its own name, in plain words, no dish names"
        )


_READS: dict[tuple[object, ...], tuple[tuple[str, Food | None], ...]] = {}
"""Texts already read, by table, meal foods and vouched words: a plan reads each meal's texts
several times (when it is checked, scaled and saved)."""

_MAX_READS = 32768


class MealReader:
    """Reads the texts of one meal against its foods, the ordinary words and, for a catalogue
    recipe, the recipe's own reviewed words."""

    def __init__(
        self, table: FoodTable, foods: Iterable[Food], vouched: frozenset[str] = frozenset()
    ) -> None:
        self.table = table
        self.foods = {food.id: food for food in foods}
        self._ids = frozenset(self.foods)
        self.vouched = vouched
        known: set[str] = set(ordinary_words()) | vouched
        for staple in STAPLES:
            found = table.by_id(staple)
            if found is not None:
                known |= food_words(found)
        for food in self.foods.values():
            known |= food_words(food)
        self.known = frozenset(known)

    def unknown(self, label: str, text: str) -> list[Unknown]:
        """Every word of ``text`` the meal cannot vouch for, each once, in reading order."""
        key = (self.table, self._ids, self.vouched, text)
        read = _READS.get(key)
        if read is None:
            read = self._read(text)
            if len(_READS) >= _MAX_READS:
                _READS.clear()
            _READS[key] = read
        return [Unknown(label, word, food) for word, food in read]

    def _read(self, text: str) -> tuple[tuple[str, Food | None], ...]:
        found: dict[str, Food | None] = {}
        for word in tokens(text):
            if word in self.known or _MEASURE.fullmatch(word):
                continue
            found.setdefault(word, None)
        for part in _CLAUSE_BREAK.split(text):
            for phrase, food in self._other_foods(tokens(part)):
                found.setdefault(phrase, food)
        return tuple(found.items())

    def _other_foods(self, read: Sequence[str]) -> list[tuple[str, Food]]:
        """Runs of words that name a table food which is not the meal's. A run inside a longer
        run naming one of the meal's foods ("milk" in "almond milk") is that food."""
        covered = [False] * len(read)
        others: list[tuple[int, int, Food]] = []
        vocabulary = _label_words_of(self.table)
        in_labels = [word in vocabulary for word in read]
        for size in range(min(_LONGEST_LABEL, len(read)), 0, -1):
            for start in range(len(read) - size + 1):
                if not all(in_labels[start : start + size]):
                    continue  # no food's name has that word
                run = tuple(read[start : start + size])
                food = _named_food(self.table, run)
                if food is None or food.id in STAPLES:
                    continue
                if food.id in self.foods:
                    covered[start : start + size] = [True] * size
                elif not all(word in self.vouched for word in run) and not self._shortens(
                    run, food
                ):
                    others.append((start, size, food))
        return [
            (" ".join(read[start : start + size]), food)
            for start, size, food in others
            if not all(covered[start : start + size])
        ]

    def _shortens(self, run: Sequence[str], food: Food) -> bool:
        """Whether ``run`` (naming ``food``) is a meal food called by part of its name, perhaps
        with ordinary words, that adds nothing to it: "the tomatoes" for cherry tomatoes,
        "roasted peppers" for a red bell pepper, but not "milk" for almond milk."""
        own = set(run) - ordinary_words()
        return any(
            own <= food_words(mine)
            and food.allergens <= mine.allergens
            and food.flags <= mine.flags
            for mine in self.foods.values()
        )


@lru_cache(maxsize=8)
def _label_words_of(table: FoodTable) -> frozenset[str]:
    """Every word of every food's name and aliases (as ``lookup_key`` reads them)."""
    return frozenset(
        word
        for food in table.foods
        for label in (food.name, *food.aliases)
        for word in lookup_key(label).split()
    )


@lru_cache(maxsize=65536)
def _named_food(table: FoodTable, run: tuple[str, ...]) -> Food | None:
    """The table food ``run`` names, if every one of its words is part of that name ("the
    onion" is read as "onion", not as a name of its own)."""
    text = " ".join(run)
    if len(lookup_key(text).split()) != len(run):
        return None
    return table.lookup(text)


def recipe_words(texts: Iterable[str]) -> frozenset[str]:
    """The words of a catalogue recipe's reviewed texts."""
    return frozenset(word for text in texts for word in tokens(text))
