"""What a planner is: it proposes meals; the validator decides what is served."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from mealplan_cli.generation.models import MealPlanRequest, RejectedMeal, ScaledMeal, Usage
from mealplan_cli.generation.validation import CheckedMeal, PlanValidator


@dataclass(frozen=True)
class Progress:
    """One step of a generation, for a progress bar: ``done`` of ``total`` in ``stage``."""

    stage: str
    done: int
    total: int
    message: str = ""


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The callback for callers that do not show progress."""


@dataclass
class PlannerResult:
    """Validated days of meals (per serving, before photos), with what it took to get them."""

    days: list[list[CheckedMeal]]
    model: str | None = None
    seed: int | None = None
    usage: Usage = field(default_factory=Usage)
    scaled: list[ScaledMeal] = field(default_factory=list)
    rejected: list[RejectedMeal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Planner(Protocol):
    name: str

    async def plan(
        self, request: MealPlanRequest, validator: PlanValidator, on_progress: ProgressCallback
    ) -> PlannerResult:
        """Days of validated meals for ``request``; raises a ``GenerationError`` when it cannot."""
        ...
