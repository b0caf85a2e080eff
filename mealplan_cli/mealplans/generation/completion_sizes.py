"""How many completion tokens to reserve for a call: sized from what answers measured.

OpenAI charges ``max_completion_tokens`` against the rate limit when a request arrives,
whatever the answer uses. A blanket 8,000 for a day that needs about 1,100 was most of a plan's
charge (64,000 of 111,000 tokens for a 7-day plan). So each call reserves what its answer is
expected to need: per meal it holds, a margin over the largest answers of that kind seen lately
by this process (the first calls start from a conservative guess), and only a call that is cut
off (``finish_reason: length``) is asked again, with twice the reservation each time, never more
than the old blanket cap.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

MARGIN = 1.25
"""Over the largest recent answer per item: answers of one kind vary by about a fifth."""

RECENT = 64
"""Answers remembered per kind: enough to see the large ones, few enough to follow a change of
model or prompt."""

REASONING_MODELS = ("gpt-5", "o1", "o3", "o4")
"""Their hidden reasoning counts in the completion: a first guess far larger."""


@dataclass(frozen=True)
class Kind:
    """A kind of answer: the first guess per item, a floor per item, the fixed part, the cap."""

    start_per_item: int
    floor_per_item: int
    overhead: int
    cap: int


MEALS = Kind(start_per_item=700, floor_per_item=250, overhead=60, cap=8000)
"""Day and meal answers, per meal written: ingredients, steps and text of one meal."""

OUTLINE = Kind(start_per_item=45, floor_per_item=25, overhead=60, cap=4000)
"""Outline answers, per meal listed: a title, a protein and a cuisine."""


@dataclass
class CompletionSizes:
    """The reservations of one planner (one process), learned from its answers."""

    model: str = ""
    _seen: dict[Kind, deque[float]] = field(default_factory=dict)

    def reserve(self, kind: Kind, items: int, truncations: int = 0) -> int:
        """``max_completion_tokens`` for an answer of ``items`` items, doubled per cut-off."""
        per_item: float
        seen = self._seen.get(kind)
        if seen:
            per_item = max(kind.floor_per_item, MARGIN * max(seen))
        else:
            per_item = kind.start_per_item * (4 if self._reasoning else 1)
        tokens: int = math.ceil(per_item * max(items, 1) + kind.overhead) * (2**truncations)
        return min(tokens, kind.cap * (4 if self._reasoning else 1))

    def observe(self, kind: Kind, items: int, completion_tokens: int, cut_off: bool) -> None:
        """An answer of ``items`` items used ``completion_tokens``; a cut-off one needed more
        than that, so it counts as at least a third again as much."""
        per_item = max(completion_tokens - kind.overhead, 0) / max(items, 1)
        if cut_off:
            per_item *= 4 / 3
        self._seen.setdefault(kind, deque(maxlen=RECENT)).append(per_item)

    @property
    def _reasoning(self) -> bool:
        return self.model.startswith(REASONING_MODELS)
