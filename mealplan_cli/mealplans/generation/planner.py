"""What a planner is: it proposes meals; the validator decides what is served."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mealplan_cli.mealplans.generation.models import RejectedMeal, ScaledMeal, Usage
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator


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


DayCallback = Callable[[int, list[CheckedMeal]], None]
"""Told each day (its number, its meals) as soon as the planner has validated it, so a caller
can show it before the whole plan is done. A day may be told again if the planner rewrites it."""


def no_day(_number: int, _meals: list[CheckedMeal]) -> None:
    """The day callback for callers that only want the finished plan."""


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
    cuisine_note: str | None = None
    """Why fewer than 2 of 3 meals come from the asked cuisines, if the planner checked."""


class Planner(Protocol):
    name: str

    async def plan(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        on_progress: ProgressCallback,
        on_day: DayCallback = no_day,
    ) -> PlannerResult:
        """Days of validated meals for ``request``; raises a ``GenerationError`` when it cannot.

        A planner that takes noticeable time per day calls ``on_day`` as each one is ready."""
        ...


@runtime_checkable
class ResumingPlanner(Planner, Protocol):
    """A planner that can take up a plan where an earlier attempt left it."""

    async def resume(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        on_progress: ProgressCallback,
        on_day: DayCallback,
        done: dict[int, list[CheckedMeal]],
    ) -> PlannerResult:
        """As ``plan``, but the days in ``done`` (validated already) are kept, not written
        again; only the others cost calls."""
        ...
