"""Reading free text the way a careful person would, whatever tricks its spelling plays.

A model (or a catalogue author) can hide an allergen from a word match without meaning to:
"crème fraîche" with combining accents, "ALMONDS" in capitals, "almоnds" with a Cyrillic "о",
a zero-width space inside "pea\u200bnut", full-width letters. ``normalise`` undoes all of these:
NFKC, case folding, accents stripped, invisible characters dropped, and letters from other
scripts that look like Latin ones mapped to the Latin letter. What still is not Latin after that
cannot be read by the lexicon, and ``unreadable`` says so, so that callers can refuse it rather
than pass it (fail closed).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Cyrillic and Greek letters that render like a Latin letter (lowercase, after case folding).
_LOOK_ALIKES = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "һ": "h",
    "ӏ": "l",
    "ɡ": "g",
    # Greek
    "α": "a",
    "β": "b",
    "ε": "e",
    "η": "n",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "ω": "w",
    "ς": "s",
    "σ": "o",
    # Latin letters that NFKD does not decompose
    "ß": "ss",
    "æ": "ae",
    "œ": "oe",
    "ø": "o",
    "ł": "l",
    "đ": "d",
    "ð": "d",
    "þ": "th",
    "ı": "i",
}


@lru_cache(maxsize=32768)
def normalise(text: str) -> str:
    """``text`` folded to plain lowercase Latin where it can be: see the module docstring."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    mapped = "".join(_LOOK_ALIKES.get(char, char) for char in folded)
    decomposed = unicodedata.normalize("NFKD", mapped)
    kept = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category == "Mn" or category == "Cf":  # accents; zero-width and soft hyphens
            continue
        kept.append(_LOOK_ALIKES.get(char, char))
    return "".join(kept)


@lru_cache(maxsize=32768)
def unreadable(text: str) -> str | None:
    """The first letter of ``text`` the lexicon cannot read (not Latin after ``normalise``)."""
    folded = normalise(text)
    if folded.isascii():
        return None
    for char in folded:
        if char.isalpha() and not char.isascii():
            return char
    return None
