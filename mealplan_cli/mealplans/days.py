"""Days of a meal plan written into its row as they are ready, before the whole plan is done.

The generation library tells each validated day (``generate_meal_plan(on_day=...)``); this
writes them, fenced by the job's lease, into ``meal_plans.days`` (see the migration
``20240106000000_days_as_ready.sql``), where the app reads them through RLS or Realtime.

The first day is written at once; days that come while a write is in flight, or within
``interval`` of the last one, go together in the next write, so a planner that finishes many
days at once costs one round trip, not one per day. Unlike progress (where only the latest step
matters) every day is written, unless the write fails: the days are a courtesy, the plan still
completes. When the job ends, unwritten days are discarded (the finished plan replaces them) and
no write is left running to race the completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from mealplan_cli.core.queue import ClaimedJob
from mealplan_cli.mealplans.generation.models import Day
from mealplan_cli.mealplans.plans import MealPlans
from mealplan_cli.ops.errors import DatabaseError

log = logging.getLogger("mealworker.worker")


class DayWriter:
    """Collects a job's ready days and writes them to its meal plan, throttled."""

    def __init__(self, plans: MealPlans, job: ClaimedJob, *, interval: float = 0.5) -> None:
        self.plans = plans
        self.job = job
        self.interval = interval
        self._pending: dict[str, Any] = {}
        self._written_at = float("-inf")
        self._writing = False
        self._task: asyncio.Task[None] | None = None

    def add(self, day: Day) -> None:
        """Queue ``day`` for writing (a day told again replaces the queued one)."""
        self._pending[str(day.day)] = day.model_dump(mode="json")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            wait = self._written_at + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            days, self._pending = self._pending, {}
            self._written_at = time.monotonic()
            self._writing = True
            try:
                if not await self.plans.report_days(self.job, days):
                    self._pending.clear()  # the lease is gone: nothing more to write
                    return
            except DatabaseError as error:  # a courtesy, like progress; the plan still completes
                log.debug("job %s: days %s not written: %s", self.job.id, sorted(days), error)
            finally:
                self._writing = False

    async def flush(self) -> None:
        """Write what is queued now (the job is failing: its days are kept for the retry)."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.shield(task)
        if self._pending:
            self._written_at = float("-inf")
            await self._drain()

    async def close(self) -> None:
        """Drop what is unwritten and wait for a write in flight, so none outlives the job."""
        self._pending.clear()
        task, self._task = self._task, None
        if task is None:
            return
        if not self._writing:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
