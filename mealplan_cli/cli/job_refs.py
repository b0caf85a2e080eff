"""A job as an operator names it: its ``background_jobs`` id, or its meal plan's uuid.

The app and its support staff know a request by the meal plan's id; the queue knows the job's.
``cancel``, ``requeue``, ``run-job`` and ``tail --job`` take either, read here the same way.
A number outside PostgreSQL's ``bigint`` is refused before any connection, in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import typer

if TYPE_CHECKING:
    from mealplan_cli.core.db.base import Database

BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class JobRef:
    """What the operator typed, read as exactly one of the two kinds of id."""

    text: str
    job_id: int | None = None
    meal_plan_id: UUID | None = None

    def __str__(self) -> str:
        return f"job {self.job_id}" if self.job_id is not None else f"meal plan {self.meal_plan_id}"


def missing(ref: JobRef) -> str:
    """The error for a job that does not exist: ``no job 42``, ``no job for meal plan ...``."""
    return f"no job {ref.job_id}" if ref.job_id is not None else f"no job for {ref}"


def parse_ref(text: str, param_hint: str = "JOB") -> JobRef:
    """``text`` as a job id or a meal plan uuid; anything else is a usage error (exit 2)."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        number = int(value)
        if not 1 <= number <= BIGINT_MAX:
            raise typer.BadParameter(
                f"job id {value} is out of range (1 to {BIGINT_MAX})", param_hint=param_hint
            )
        return JobRef(text, job_id=number)
    try:
        return JobRef(text, meal_plan_id=UUID(value))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a job id (a number) nor a meal plan id (a uuid)",
            param_hint=param_hint,
        ) from None


def parse_refs(texts: Sequence[str], param_hint: str = "JOB_IDS") -> list[JobRef]:
    return [parse_ref(text, param_hint) for text in texts]


async def resolve(db: Database, refs: Sequence[JobRef]) -> tuple[list[int], list[JobRef]]:
    """The job ids ``refs`` name, in order without repeats, and the meal plans that have no
    job (unknown ones included)."""
    from mealplan_cli.mealplans.plans import MealPlans

    ids: list[int] = []
    unknown: list[JobRef] = []
    plans = MealPlans(db)
    for ref in refs:
        job_id = ref.job_id
        if job_id is None:
            assert ref.meal_plan_id is not None
            job_id = await plans.job_for(ref.meal_plan_id)
            if job_id is None:
                unknown.append(ref)
                continue
        if job_id not in ids:
            ids.append(job_id)
    return ids, unknown
