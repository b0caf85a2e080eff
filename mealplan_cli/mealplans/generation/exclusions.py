"""What a request's ``exclude`` terms forbid: allergen families, diet flags, phrases, and every
prepared food that contains a forbidden food.

"nuts" or "dairy" excludes whole families (aliases widen as for allergies); "pork" or "onion"
excludes by name; and a prepared food whose ingredients (``contains`` in the table, through
every level) include an excluded food is excluded too: salsa and marinara for onion, pesto
and hummus for garlic. Close relatives of an excluded food (shallot, leek and chives for onion)
are kept, but named in the plan's metadata so the user can see they were offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mealplan_cli.mealplans.generation.foods import Food, FoodTable, words
from mealplan_cli.mealplans.generation.lexicon import PROTEIN_FAMILIES
from mealplan_cli.mealplans.generation.models import ExclusionReport
from mealplan_cli.mealplans.generation.vocabulary import Allergen, allergen_families

_FLAG_WORDS = frozenset(
    {"meat", "poultry", "fish", "shellfish", "dairy", "egg", "honey", "alcohol"}
)


def read_exclusions(
    terms: Sequence[str],
) -> tuple[dict[Allergen, str], dict[str, str], list[tuple[str, tuple[str, ...]]]]:
    """Split exclusions into allergen families, diet flags and plain phrases."""
    allergens: dict[Allergen, str] = {}
    flags: dict[str, str] = {}
    phrases: list[tuple[str, tuple[str, ...]]] = []
    for term in terms:
        key = " ".join(words(term))
        for allergen in allergen_families(key) or allergen_families(term) or ():
            allergens[allergen] = term
        if key in _FLAG_WORDS:
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


def _labels(food: Food) -> list[tuple[str, ...]]:
    return [tuple(words(label)) for label in (food.name, *food.aliases)]


@dataclass
class Exclusions:
    """One request's exclusions, read against the food table once."""

    terms: tuple[str, ...]
    allergens: dict[Allergen, str]
    flags: dict[str, str]
    phrases: list[tuple[str, tuple[str, ...]]]
    mentions: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    """``phrases`` and the names of the prepared foods left out: what a text may not mention."""
    direct: dict[str, list[str]] = field(default_factory=dict)
    """Per term, the foods it names or whose family it is."""
    composed: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Per term, the prepared foods left out because they contain a directly excluded food,
    each with the foods inside it that did it."""
    _by_first_word: dict[str, list[tuple[str, tuple[str, ...]]]] = field(default_factory=dict)
    _in_label: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    def named_by(
        self,
        allergens: frozenset[Allergen],
        flags: frozenset[str],
        labels: Sequence[tuple[str, ...]],
    ) -> list[str]:
        """The terms that forbid something with these allergens, flags and names."""
        hits = [term for allergen, term in self.allergens.items() if allergen in allergens]
        hits += [term for flag, term in self.flags.items() if flag in flags]
        for label in labels:
            found = self._in_label.get(label)
            if found is None:
                found = [term for term, phrase in self.phrases if contains(label, phrase)]
                if len(self._in_label) < 16384:
                    self._in_label[label] = found
            hits += found
        return list(dict.fromkeys(hits))

    def mentioned_in(self, text_words: tuple[str, ...]) -> list[str]:
        """The terms a text mentions, itself or as a prepared food containing it, in order."""
        if not self._by_first_word:
            for term, phrase in self.mentions:
                if phrase:
                    self._by_first_word.setdefault(phrase[0], []).append((term, phrase))
        found: list[str] = []
        for index, word in enumerate(text_words):
            for term, phrase in self._by_first_word.get(word, ()):
                if text_words[index : index + len(phrase)] == phrase:
                    found.append(term)
        return [term for term in self.terms if term in found]

    def through_composition(self, food: Food | None) -> list[str]:
        """The terms that forbid ``food`` because of what it is made of."""
        if food is None:
            return []
        return [term for term, foods in self.composed.items() if food.name in foods]

    def report(self, table: FoodTable) -> list[ExclusionReport]:
        """Per term, what it left out and which close relatives of those foods were kept."""
        reports = []
        for term in self.terms:
            gone = set(self.direct.get(term, ())) | set(self.composed.get(term, {}))
            out_of_all = {name for names in self.direct.values() for name in names}
            out_of_all |= {name for foods in self.composed.values() for name in foods}
            relatives: list[str] = []
            for name in self.direct.get(term, ()):
                relatives += [r for r in table.get(name).relatives if r not in out_of_all]
            kept = list(dict.fromkeys(relatives))
            inside = [
                f"{food.name} ({', '.join(sorted(set(kept) & food.components))})"
                for food in table.foods
                if food.name not in out_of_all and set(kept) & food.components
            ]
            reports.append(
                ExclusionReport(
                    term=term,
                    left_out=sorted(self.direct.get(term, ())),
                    left_out_prepared=sorted(gone - set(self.direct.get(term, ()))),
                    relatives_kept=kept + inside,
                )
            )
        return reports


def exclusions_for(terms: Sequence[str], table: FoodTable) -> Exclusions:
    """``terms`` read against ``table``: which foods each forbids, directly and inside others."""
    allergens, flags, phrases = read_exclusions(terms)
    found = Exclusions(tuple(terms), allergens, flags, phrases)
    if not terms:
        return found
    for food in table.foods:
        for term in found.named_by(food.allergens, food.flags, _labels(food)):
            found.direct.setdefault(term, []).append(food.name)
    directly: dict[str, list[str]] = {}
    for term, names in found.direct.items():
        for name in names:
            directly.setdefault(name, []).append(term)
    for food in table.foods:
        for part in sorted(food.components):
            for term in directly.get(part, ()):
                if food.name not in found.direct.get(term, ()):
                    found.composed.setdefault(term, {}).setdefault(food.name, []).append(part)
    # A mention of a prepared food in a title or a step is a mention of what it contains.
    found.mentions = list(phrases)
    for term, foods in found.composed.items():
        for name in foods:
            found.mentions += [(term, label) for label in _labels(table.get(name)) if label]
    return found
