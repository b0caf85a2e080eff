"""The ``generate_meal_plan`` handler: the generation library run as a queue job.

Its resources are the ``GenerationServices`` the runtime opened (planner, photos). Progress
goes into the job's meal plan, fenced by the lease and throttled. When the operator's daily
OpenAI cap is spent, the job waits for the next UTC day (``JobDeferred``) and its meal plan
says so, unless the catalogue may write the plan (``OPENAI_DAILY_CAP_FALLBACK``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from mealplan_cli.core.handlers import JobContext
from mealplan_cli.core.queue import ClaimedJob
from mealplan_cli.mealplans.budget import CallOwner, calls_of
from mealplan_cli.mealplans.days import DayWriter
from mealplan_cli.mealplans.generation import generate_meal_plan
from mealplan_cli.mealplans.generation.models import Day
from mealplan_cli.mealplans.generation.planner import Progress
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.services import GenerationServices
from mealplan_cli.mealplans.plans import MealPlans
from mealplan_cli.ops.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    InvalidRequestError,
    JobDeferred,
    SpendCapReachedError,
)

log = logging.getLogger("mealworker.worker")

PROGRESS_INTERVAL_SECONDS = 0.5
"""Progress is written at most this often per job (the latest step wins)."""


class ProgressWriter:
    """Turns the library's progress callback into fenced, throttled writes to the meal plan."""

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self._latest: dict[str, Any] | None = None
        self._written_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._refused = False

    def update(self, step: Progress) -> None:
        self._latest = {
            "stage": step.stage,
            "done": step.done,
            "total": step.total,
            "message": step.message,
        }
        if self.context.on_progress is not None:
            self.context.on_progress(step)
        due = time.monotonic() - self._written_at >= PROGRESS_INTERVAL_SECONDS
        if due and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        progress, self._latest = self._latest, None
        if progress is None:
            return
        self._written_at = time.monotonic()
        try:
            await self.context.queue.report_progress(self.context.job, progress)
        except DatabaseUnavailableError as error:  # the outage is told elsewhere
            log.debug("job %s: progress not written: %s", self.context.job.id, error)
        except DatabaseError as error:  # progress is a courtesy; the job goes on without it
            # A refusal (an app's trigger on meal_plans) is said once per job: an operator
            # should know the app's users see no progress, without a line per step.
            level = logging.DEBUG if self._refused else logging.WARNING
            self._refused = True
            job = self.context.job
            log.log(
                level,
                "job %s: progress not written, the database refused it: %s",
                job.id,
                error,
                extra={"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts},
            )

    async def flush(self) -> None:
        if self._task is not None:
            await self._task
        await self._write()

    async def drop(self) -> None:
        """Write nothing more: the last steps would overwrite what the plan says next."""
        self._latest = None
        if self._task is not None:
            await self._task


def saved_days(stored: dict[str, Any], job: ClaimedJob) -> list[Day]:
    """The stored days that still read as days (the validator checks them next)."""
    days = []
    for number, value in sorted(stored.items()):
        try:
            days.append(Day.model_validate(value))
        except ValueError:
            log.info("job %s: saved day %s unreadable, written again", job.id, number)
    return days


CAP_MESSAGE = (
    "The daily budget for AI-written plans is spent: this plan is written when it renews, "
    "at {until} UTC."
)
"""What the app's user reads in the waiting plan's progress."""


async def _wait_for_cap(
    plans: MealPlans, progress: ProgressWriter, job: ClaimedJob, until: datetime, reason: str
) -> None:
    """The meal plan says it waits, and until when; a refusal leaves it as it was (the job
    still waits: a plan showing its last progress is better than a job failed for it)."""
    await progress.drop()
    message = CAP_MESSAGE.format(until=until.astimezone(UTC).strftime("%Y-%m-%d %H:%M"))
    try:
        await plans.waiting(job, "daily OpenAI cap reached", until, message)
    except DatabaseError as error:
        log.warning("job %s: waiting plan not written: %s (%s)", job.id, error, reason)


async def generate_meal_plan_job(job: ClaimedJob, context: JobContext) -> dict[str, Any]:
    """Generate, validate and return the plan; the worker writes it when completing the job."""
    if "request" not in job.payload:
        raise InvalidRequestError(f"job {job.id} has no request in its payload")
    services: GenerationServices = context.resources
    request = parse_request(job.payload["request"])
    progress = ProgressWriter(context)
    plans = MealPlans(context.queue.db)
    try:
        saved = saved_days(await plans.saved_days(job), job)
    except DatabaseError as error:  # resuming saves tokens; without it the plan is still made
        log.info("job %s: saved days not read, all days written: %s", job.id, error)
        saved = []
    days = DayWriter(plans, job, interval=PROGRESS_INTERVAL_SECONDS)
    try:
        # The OpenAI calls wait their turn on a short budget as this job's (its meal plan's
        # user found by the database), oldest job first.
        with calls_of(CallOwner.of(job)):
            plan = await generate_meal_plan(
                request,
                planner=services.planner,
                images=services.images,
                on_progress=progress.update,
                on_day=days.add,
                saved_days=saved,
            )
    except SpendCapReachedError as error:
        await days.flush()  # what is validated is kept for when the cap opens again
        if error.until is None:  # waiting cannot help: the job fails, saying what to change
            raise
        await _wait_for_cap(plans, progress, job, error.until, error.reason)
        raise JobDeferred(error.until, error.reason) from None
    except Exception:
        await days.flush()  # what is validated is kept for the next attempt
        raise
    finally:
        await days.close()
    await progress.flush()
    return {
        "plan": plan.model_dump(mode="json"),
        "usage": plan.metadata.usage.model_dump(mode="json"),
    }
