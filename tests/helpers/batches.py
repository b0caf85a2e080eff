"""Meal-plan jobs that finish together, so that their completions share one batch."""

from __future__ import annotations

import asyncio
from typing import Any

from mealplan_cli.core.queue import ClaimedJob
from mealplan_cli.handlers import HandlerRegistry, JobContext
from mealplan_cli.mealplans.plans import MEAL_PLAN_JOB


def finishing_together(count: int, bad_plan: str | None = None) -> HandlerRegistry:
    """A meal-plan handler whose ``count`` jobs all end in the same tick: one completion
    batch, as when a worker's jobs finish together. The job of meal plan ``bad_plan`` returns
    a plan without ``days`` (one an app's check can refuse)."""
    started = 0
    all_started = asyncio.Event()

    async def handler(job: ClaimedJob, context: JobContext) -> dict[str, Any]:
        nonlocal started
        started += 1
        if started == count:
            all_started.set()
        await all_started.wait()
        key = (
            "weeks" if bad_plan is not None and job.payload["meal_plan_id"] == bad_plan else "days"
        )
        return {"plan": {key: []}, "usage": {"total_tokens": 0}}

    handlers = HandlerRegistry()
    handlers.register(MEAL_PLAN_JOB, handler)
    return handlers
