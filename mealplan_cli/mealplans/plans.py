"""Meal plans on top of the generic job protocol: their rows, their enqueue, the photo cache.

A meal plan is a ``meal_plans`` row plus one ``generate_meal_plan`` job, created together by
``mealworker_enqueue_meal_plan``. The domain's triggers on ``background_jobs`` (the
``meal_plan_jobs_*`` of the migrations) mirror the job into the row in the statement that
changes it: completing the job saves the plan in the same transaction. The generic ``Queue``
and its SQL functions know none of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from mealplan_cli.core.db.base import Database, Row
from mealplan_cli.core.queue import ClaimedJob, parse_uuid

if TYPE_CHECKING:
    from mealplan_cli.mealplans.generation.images import CachedPhoto
    from mealplan_cli.mealplans.generation.models import Photo
    from mealplan_cli.mealplans.generation.request import MealPlanRequest

MEAL_PLAN_JOB = "generate_meal_plan"


@dataclass(frozen=True)
class Enqueued:
    meal_plan_id: UUID
    job_id: int
    created: bool


@dataclass(frozen=True)
class MealPlanRow:
    """A ``meal_plans`` row as an app sees it."""

    id: UUID
    status: str
    progress: dict[str, Any]
    plan: dict[str, Any] | None
    error: str | None

    @classmethod
    def from_row(cls, row: Row) -> MealPlanRow:
        plan_id = parse_uuid(row["id"])
        assert plan_id is not None
        return cls(
            id=plan_id,
            status=str(row["status"]),
            progress=dict(row.get("progress") or {}),
            plan=row.get("plan"),
            error=row.get("error"),
        )


class MealPlans:
    """The meal-plan calls, over any ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(
        self,
        request: MealPlanRequest,
        *,
        user_id: UUID | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        max_attempts: int = 5,
    ) -> Enqueued:
        rows = await self.db.call(
            "mealworker_enqueue_meal_plan",
            p_request=request.model_dump(mode="json"),
            p_user_id=user_id,
            p_priority=priority,
            p_idempotency_key=idempotency_key,
            p_max_attempts=max_attempts,
        )
        row = rows[0]
        plan_id = parse_uuid(row["meal_plan_id"])
        assert plan_id is not None
        return Enqueued(plan_id, int(row["job_id"]), bool(row["created"]))

    async def get(self, meal_plan_id: UUID) -> MealPlanRow | None:
        rows = await self.db.call("mealworker_get_meal_plan", p_meal_plan_id=meal_plan_id)
        return MealPlanRow.from_row(rows[0]) if rows else None

    async def job_for(self, meal_plan_id: UUID) -> int | None:
        """The newest job generating this meal plan (``run-job <meal plan id>``)."""
        job_id = await self.db.value("mealworker_job_for_meal_plan", p_meal_plan_id=meal_plan_id)
        return None if job_id is None else int(job_id)

    async def stats(self) -> dict[str, Any]:
        """The meal plans completed in the last 24 hours and their OpenAI usage
        (``plans_24h``, ``openai_24h``), beside the queue's own figures in ``stats``."""
        return dict(await self.db.value("mealworker_meal_plan_stats") or {})

    async def report_days(self, job: ClaimedJob, days: dict[str, Any]) -> bool:
        """Merge finished days (``{"<day number>": day}``) into the job's meal plan, so the app
        shows them before the whole plan is done; False when the lease is gone."""
        written = await self.db.value(
            "mealworker_report_days", p_job_id=job.id, p_lease_token=job.lease_token, p_days=days
        )
        return bool(written)

    async def waiting(
        self, job: ClaimedJob, waiting: str, until: datetime, message: str | None = None
    ) -> bool:
        """The job's meal plan waits (the job is about to be deferred): pending, with
        ``{"stage": "waiting", "waiting": ..., "until": ..., "message": ...}`` as its progress
        for the app; False when the lease is gone or the job is being cancelled."""
        written = await self.db.value(
            "mealworker_meal_plan_waiting",
            p_job_id=job.id,
            p_lease_token=job.lease_token,
            p_waiting=waiting,
            p_until=until,
            p_message=message,
        )
        return bool(written)

    async def saved_days(self, job: ClaimedJob) -> dict[str, Any]:
        """The days an earlier attempt saved for the job's meal plan (``{"<day>": day}``);
        empty when there are none or the lease is no longer held."""
        days = await self.db.value(
            "mealworker_saved_days", p_job_id=job.id, p_lease_token=job.lease_token
        )
        return dict(days) if isinstance(days, dict) else {}


class DatabaseImageCache:
    """The photo cache of the generation library, kept in ``image_cache``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, query: str) -> CachedPhoto | None:
        from mealplan_cli.mealplans.generation.images import CachedPhoto
        from mealplan_cli.mealplans.generation.models import Photo

        rows = await self.db.call("mealworker_image_cache_get", p_query=query)
        if not rows or not rows[0].get("found"):
            return None
        photo = rows[0].get("photo")
        return CachedPhoto(Photo.model_validate(photo) if photo else None)

    async def put(self, query: str, photo: Photo | None) -> None:
        await self.db.value(
            "mealworker_image_cache_put",
            p_query=query,
            p_photo=photo.model_dump(mode="json") if photo else None,
        )
