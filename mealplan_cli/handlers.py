"""What the worker does with each job type, registered in one place.

A handler is ``async def handler(job, context) -> dict | None``: the dict is the job's result
(for a meal plan, ``{"plan": ..., "usage": ...}``, written in the same transaction that completes
the job). Raising a ``MealworkerError`` fails the job, retried later when ``error.retryable``.
A program embedding mealworker adds its own with ``registry.register("type", handler)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mealplan_cli.day_writer import DayWriter
from mealplan_cli.db.base import DatabaseError
from mealplan_cli.errors import InvalidRequestError
from mealplan_cli.generation import generate_meal_plan
from mealplan_cli.generation.models import parse_request
from mealplan_cli.generation.planner import Progress
from mealplan_cli.generation.services import GenerationServices
from mealplan_cli.queue import MEAL_PLAN_JOB, PING_JOB, ClaimedJob, Queue

log = logging.getLogger("mealworker.worker")

PROGRESS_INTERVAL_SECONDS = 0.5
"""Progress is written at most this often per job (the latest step wins)."""


@dataclass
class JobContext:
    """What a handler may use: the queue (for progress), the generation services, its job."""

    queue: Queue
    job: ClaimedJob
    services: GenerationServices
    worker_id: str
    on_progress: Callable[[Progress], None] | None = None
    """Also told every step (``run-job``'s progress display)."""


Handler = Callable[[ClaimedJob, JobContext], Awaitable[dict[str, Any] | None]]


@dataclass
class HandlerRegistry:
    handlers: dict[str, Handler] = field(default_factory=dict)

    def register(self, job_type: str, handler: Handler) -> None:
        self.handlers[job_type] = handler

    def get(self, job_type: str) -> Handler | None:
        return self.handlers.get(job_type)

    def __iter__(self) -> Iterator[str]:
        return iter(self.handlers)

    def only(self, job_types: list[str]) -> HandlerRegistry:
        """The same handlers restricted to ``job_types`` (``work --job-type``)."""
        return HandlerRegistry({t: h for t, h in self.handlers.items() if t in job_types})


class ProgressWriter:
    """Turns the library's progress callback into fenced, throttled writes to the meal plan."""

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self._latest: dict[str, Any] | None = None
        self._written_at = 0.0
        self._task: asyncio.Task[None] | None = None

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
        except DatabaseError as error:  # progress is a courtesy; the job goes on without it
            log.debug("job %s: progress not written: %s", self.context.job.id, error)

    async def flush(self) -> None:
        if self._task is not None:
            await self._task
        await self._write()


async def generate_meal_plan_job(job: ClaimedJob, context: JobContext) -> dict[str, Any]:
    """Generate, validate and return the plan; the worker writes it when completing the job."""
    if "request" not in job.payload:
        raise InvalidRequestError(f"job {job.id} has no request in its payload")
    request = parse_request(job.payload["request"])
    progress = ProgressWriter(context)
    days = DayWriter(context.queue, job, interval=PROGRESS_INTERVAL_SECONDS)
    try:
        plan = await generate_meal_plan(
            request,
            planner=context.services.planner,
            images=context.services.images,
            on_progress=progress.update,
            on_day=days.add,
        )
    finally:
        await days.close()
    await progress.flush()
    return {
        "plan": plan.model_dump(mode="json"),
        "usage": plan.metadata.usage.model_dump(mode="json"),
    }


async def ping_job(job: ClaimedJob, context: JobContext) -> None:
    """Completes at once: for health checks and queue benchmarks."""


def default_handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register(MEAL_PLAN_JOB, generate_meal_plan_job)
    registry.register(PING_JOB, ping_job)
    return registry
