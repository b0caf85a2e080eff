"""Running one handler: every failure reduced to ``JobFailed``, a deferral passed on as the
handler raised it (the time limit is the lifecycle's: one timer per batch of jobs started
together, not a timeout context per call)."""

from __future__ import annotations

import logging
from typing import Any

from mealplan_cli.core.handlers import Handler, JobContext
from mealplan_cli.core.queue import ClaimedJob
from mealplan_cli.ops.errors import JobDeferred, JobFailed, MealworkerError

log = logging.getLogger("mealworker.worker")


def job_fields(job: ClaimedJob) -> dict[str, Any]:
    """The fields every log line about a job carries (besides the worker id)."""
    return {"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts}


async def execute(
    handler: Handler | None, job: ClaimedJob, context: JobContext
) -> dict[str, Any] | None:
    """Run one job's handler; any failure becomes ``JobFailed`` (cancellation and
    ``JobDeferred`` pass through)."""
    try:
        if handler is None:
            raise MealworkerError(f"no handler for job type {job.job_type!r}")
        return await handler(job, context)
    except (JobFailed, JobDeferred):
        raise
    except MealworkerError as error:
        raise JobFailed(str(error), error.retryable, type(error).__name__) from None
    except Exception as error:  # a bug in a handler must not stop the worker
        log.exception("job %s: unexpected error", job.id, extra=job_fields(job))
        kind = type(error).__name__
        raise JobFailed(f"unexpected error: {kind}: {error}", True, kind) from None
