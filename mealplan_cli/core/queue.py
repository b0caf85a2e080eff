"""The job protocol: typed wrappers over the queue's SQL functions, for jobs of any type.

Every state change is one of the functions in ``supabase/migrations``; this module only names
them, passes arguments and reads results into dataclasses. Nothing here composes SQL, so the
postgres and REST transports behave identically. It knows nothing of meal plans: those are one
job type, built on top in ``mealplan_cli.mealplans.plans``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from mealplan_cli.core.db.base import Database, Row, SchemaMissingError

PING_JOB = "ping"
"""The built-in no-op job type: health checks and queue benchmarks."""

NOTIFY_CHANNEL = "mealworker_jobs"
"""Where the enqueue path's triggers ``pg_notify`` (the SQL side names it in its triggers)."""

QUEUE_FUNCTIONS = frozenset(
    {
        "mealworker_cancel_jobs",
        "mealworker_claim_job",
        "mealworker_claim_jobs",
        "mealworker_claim_next",
        "mealworker_complete_jobs",
        "mealworker_defer_job",
        "mealworker_enqueue_job",
        "mealworker_enqueue_jobs",
        "mealworker_events_from",
        "mealworker_events_since",
        "mealworker_fail_job",
        "mealworker_get_job",
        "mealworker_heartbeat",
        "mealworker_job_note",
        "mealworker_jobs_after_insert",
        "mealworker_jobs_after_update",
        "mealworker_jobs_wait_reason_clear",
        "mealworker_prune",
        "mealworker_queue_stats",
        "mealworker_recent_events",
        "mealworker_register_worker",
        "mealworker_release_jobs",
        "mealworker_report_progress",
        "mealworker_requeue_jobs",
        "mealworker_requeue_stale",
        "mealworker_stale_jobs",
        "mealworker_stop_worker",
        "mealworker_waiting_jobs",
    }
)
"""The queue's own SQL functions (``public.<name>``), the generic core's: they touch only the
queue's tables and know no job type's domain. A job type's SQL (meal plans' included) lives
beside them under other names; ``tests/integration/test_generic_core.py`` holds them to this."""


def parse_uuid(value: Any) -> UUID | None:
    if value is None or isinstance(value, UUID):
        return value
    return UUID(str(value))


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds a lease on; ``lease_token`` fences every write about it."""

    id: int
    job_type: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    priority: int
    lease_token: UUID
    lease_expires_at: datetime | None
    created_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> ClaimedJob:
        token = parse_uuid(row["lease_token"])
        assert token is not None
        return cls(
            id=int(row["id"]),
            job_type=str(row["job_type"]),
            payload=dict(row.get("payload") or {}),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            priority=int(row.get("priority") or 0),
            lease_token=token,
            lease_expires_at=parse_time(row.get("lease_expires_at")),
            created_at=parse_time(row.get("created_at")),
        )


@dataclass(frozen=True)
class JobInfo:
    id: int
    job_type: str
    status: str
    attempts: int
    max_attempts: int
    locked_by: str | None
    last_error: str | None
    payload: dict[str, Any]
    run_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> JobInfo:
        return cls(
            id=int(row["id"]),
            job_type=str(row["job_type"]),
            status=str(row["status"]),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            locked_by=row.get("locked_by"),
            last_error=row.get("last_error"),
            payload=dict(row.get("payload") or {}),
            run_at=parse_time(row.get("run_at")),
            updated_at=parse_time(row.get("updated_at")),
        )


@dataclass(frozen=True)
class EnqueuedJob:
    job_id: int
    created: bool
    """False when the idempotency key had been used already: ``job_id`` is that job."""


@dataclass(frozen=True)
class LostLease:
    job_id: int
    reason: str
    """"lost" (another worker has it, or it expired) or "cancelled" (an operator cancelled it)."""


@dataclass(frozen=True)
class Pruned:
    """How many finished jobs and old events ``prune`` deleted (or would delete)."""

    jobs: int
    events: int


@dataclass(frozen=True)
class Cancellation:
    """What ``cancel`` did to one job."""

    job_id: int
    status: str
    previous_status: str
    outcome: str
    """cancelled, cancel_requested, already_requested, already_cancelled or finished."""

    @property
    def refused(self) -> bool:
        """The job had finished (completed or failed): there was nothing left to cancel."""
        return self.outcome == "finished"


@dataclass(frozen=True)
class WaitingJobs:
    """Jobs of one type deferred for one reason (``mealworker_defer_job``), not yet runnable."""

    job_type: str
    reason: str
    jobs: int
    first_run_at: datetime | None
    last_run_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> WaitingJobs:
        return cls(
            job_type=str(row["job_type"]),
            reason=str(row["wait_reason"]),
            jobs=int(row["jobs"]),
            first_run_at=parse_time(row.get("first_run_at")),
            last_run_at=parse_time(row.get("last_run_at")),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "job_type": self.job_type,
            "reason": self.reason,
            "jobs": self.jobs,
            "until": self.first_run_at.isoformat() if self.first_run_at else None,
            "last_until": self.last_run_at.isoformat() if self.last_run_at else None,
        }


@dataclass(frozen=True)
class Completion:
    job: ClaimedJob
    result: dict[str, Any] | None


def _when(run_at: datetime | None, delay: float | None) -> datetime | None:
    if delay is not None:
        return datetime.now(UTC) + timedelta(seconds=delay)
    return run_at


def _only(row: Row) -> Any:
    """The value of a one-column row (an element of ``setof <scalar>``)."""
    return next(iter(row.values()))


class Queue:
    """The queue operations, over any ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._separate_claims = False
        """The database has no ``mealworker_claim_next`` (an older schema)."""

    async def wait_for_jobs(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` whenever new jobs may be runnable, until cancelled: LISTEN where the
        transport can; elsewhere it only waits (the caller polls anyway)."""
        if self.db.supports_listen:
            await self.db.listen(NOTIFY_CHANNEL, lambda _: wake())
        else:
            await asyncio.Event().wait()

    async def enqueue(
        self,
        job_type: str,
        payload: dict[str, Any] | None = None,
        *,
        priority: int = 0,
        max_attempts: int = 5,
        run_at: datetime | None = None,
        delay: float | None = None,
        idempotency_key: str | None = None,
    ) -> EnqueuedJob:
        """One job of any type; ``run_at`` or ``delay`` (seconds) postpones it. A second call
        with the same ``idempotency_key`` for the same type returns the first job."""
        rows = await self.db.call(
            "mealworker_enqueue_job",
            p_job_type=job_type,
            p_payload=payload or {},
            p_priority=priority,
            p_max_attempts=max_attempts,
            p_run_at=_when(run_at, delay),
            p_idempotency_key=idempotency_key,
        )
        return EnqueuedJob(int(rows[0]["job_id"]), bool(rows[0]["created"]))

    async def enqueue_jobs(
        self,
        job_type: str,
        payloads: Sequence[dict[str, Any]],
        *,
        priority: int = 0,
        max_attempts: int = 5,
        run_at: datetime | None = None,
        delay: float | None = None,
    ) -> list[int]:
        """Many jobs of one type in one statement (their ids, in order)."""
        rows = await self.db.call(
            "mealworker_enqueue_jobs",
            p_job_type=job_type,
            p_payloads=list(payloads),
            p_priority=priority,
            p_max_attempts=max_attempts,
            p_run_at=_when(run_at, delay),
        )
        return [int(_only(row)) for row in rows]

    async def claim(
        self, worker_id: str, job_types: Sequence[str], limit: int, lease_seconds: float
    ) -> list[ClaimedJob]:
        rows = await self.db.call(
            "mealworker_claim_jobs",
            p_worker_id=worker_id,
            p_job_types=list(job_types),
            p_limit=limit,
            p_lease_seconds=lease_seconds,
        )
        return [ClaimedJob.from_row(row) for row in rows]

    async def claim_next(
        self,
        worker_id: str,
        job_types: Sequence[str],
        limit: int,
        lease_seconds: float,
        completions: Sequence[Completion] = (),
    ) -> tuple[set[int], list[ClaimedJob]]:
        """Complete ``completions`` and claim up to ``limit`` jobs, in one round trip: the ids
        whose lease was still held, and the claimed jobs. On a schema without the combined
        function (not migrated yet) it makes the two calls."""
        if self._separate_claims:
            return await self.complete(completions), await self.claim(
                worker_id, job_types, limit, lease_seconds
            )
        try:
            rows = await self.db.call(
                "mealworker_claim_next",
                p_worker_id=worker_id,
                p_job_types=list(job_types),
                p_limit=limit,
                p_lease_seconds=lease_seconds,
                p_job_ids=[c.job.id for c in completions],
                p_lease_tokens=[c.job.lease_token for c in completions],
                p_results=[c.result for c in completions],
            )
        except SchemaMissingError:
            self._separate_claims = True
            return await self.claim_next(worker_id, job_types, limit, lease_seconds, completions)
        completed = {int(row["completed"]) for row in rows if row["id"] is None}
        return completed, [ClaimedJob.from_row(row) for row in rows if row["id"] is not None]

    async def claim_job(
        self, job_id: int, worker_id: str, lease_seconds: float, *, force: bool = False
    ) -> ClaimedJob | None:
        rows = await self.db.call(
            "mealworker_claim_job",
            p_job_id=job_id,
            p_worker_id=worker_id,
            p_lease_seconds=lease_seconds,
            p_force=force,
        )
        return ClaimedJob.from_row(rows[0]) if rows else None

    async def get_job(self, job_id: int) -> JobInfo | None:
        rows = await self.db.call("mealworker_get_job", p_job_id=job_id)
        return JobInfo.from_row(rows[0]) if rows else None

    async def register_worker(
        self, worker_id: str, host: str, pid: int, version: str, max_jobs: int, job_types: list[str]
    ) -> None:
        await self.db.value(
            "mealworker_register_worker",
            p_worker_id=worker_id,
            p_host=host,
            p_pid=pid,
            p_version=version,
            p_max_jobs=max_jobs,
            p_job_types=job_types,
        )

    async def heartbeat(
        self,
        worker_id: str,
        jobs: Sequence[ClaimedJob],
        lease_seconds: float,
        *,
        rss_bytes: int | None = None,
        status: str = "running",
    ) -> list[LostLease]:
        rows = await self.db.call(
            "mealworker_heartbeat",
            p_worker_id=worker_id,
            p_job_ids=[job.id for job in jobs],
            p_lease_tokens=[job.lease_token for job in jobs],
            p_lease_seconds=lease_seconds,
            p_active_jobs=len(jobs),
            p_rss_bytes=rss_bytes,
            p_status=status,
        )
        return [LostLease(int(row["job_id"]), str(row["reason"])) for row in rows]

    async def stop_worker(self, worker_id: str) -> None:
        await self.db.value("mealworker_stop_worker", p_worker_id=worker_id)

    async def report_progress(self, job: ClaimedJob, progress: dict[str, Any]) -> bool:
        written = await self.db.value(
            "mealworker_report_progress",
            p_job_id=job.id,
            p_lease_token=job.lease_token,
            p_progress=progress,
        )
        return bool(written)

    async def complete(self, completions: Sequence[Completion]) -> set[int]:
        """Complete many jobs in one call; returns the ids whose lease was still held."""
        if not completions:
            return set()
        rows = await self.db.call(
            "mealworker_complete_jobs",
            p_job_ids=[c.job.id for c in completions],
            p_lease_tokens=[c.job.lease_token for c in completions],
            p_results=[c.result for c in completions],
        )
        return {int(_only(row)) for row in rows}

    async def check_completions(self) -> None:
        """Complete no job: refused only when every completion would be, whatever its rows
        (a revoked grant, a statement trigger), not when a trigger refuses some rows."""
        await self.db.call(
            "mealworker_complete_jobs", p_job_ids=[], p_lease_tokens=[], p_results=[]
        )

    async def fail(self, job: ClaimedJob, error: str, *, retryable: bool) -> str | None:
        """'pending' (retry scheduled), 'failed', 'cancelled' (an operator asked), or None when
        the lease was lost."""
        status = await self.db.value(
            "mealworker_fail_job",
            p_job_id=job.id,
            p_lease_token=job.lease_token,
            p_error=error,
            p_retryable=retryable,
        )
        return None if status is None else str(status)

    async def defer(self, job: ClaimedJob, run_at: datetime, reason: str) -> str | None:
        """Back to pending until ``run_at`` (by the database's clock), the claim's attempt given
        back and ``reason`` kept on the job for ``stats``: 'pending'; 'cancel_requested' when an
        operator is cancelling it (nothing changed: record the cancel as for a stopped job);
        None when the lease was lost."""
        status = await self.db.value(
            "mealworker_defer_job",
            p_job_id=job.id,
            p_lease_token=job.lease_token,
            p_run_at=run_at,
            p_reason=reason,
        )
        return None if status is None else str(status)

    async def note(self, job: ClaimedJob, event: str, detail: dict[str, Any] | None) -> bool:
        """Add an event of the handler's own to its job's history (``tail`` shows it); False,
        and nothing written, when the lease is no longer held."""
        noted = await self.db.value(
            "mealworker_job_note",
            p_job_id=job.id,
            p_lease_token=job.lease_token,
            p_event=event,
            p_detail=detail,
        )
        return bool(noted)

    async def waiting(self) -> list[WaitingJobs]:
        """The deferred jobs still waiting, by type and reason (``stats``)."""
        rows = await self.db.call("mealworker_waiting_jobs")
        return [WaitingJobs.from_row(row) for row in rows]

    async def release(self, worker_id: str, jobs: Sequence[ClaimedJob]) -> int:
        if not jobs:
            return 0
        released = await self.db.value(
            "mealworker_release_jobs",
            p_worker_id=worker_id,
            p_job_ids=[job.id for job in jobs],
            p_lease_tokens=[job.lease_token for job in jobs],
        )
        return int(released or 0)

    async def requeue_stale(
        self, limit: int = 1000, *, dry_run: bool = False
    ) -> list[tuple[int, str]]:
        """Jobs whose lease expired, each with the status it got (``dry_run``: would get;
        nothing written)."""
        function = "mealworker_stale_jobs" if dry_run else "mealworker_requeue_stale"
        rows = await self.db.call(function, p_limit=limit)
        return [(int(row["job_id"]), str(row["status"])) for row in rows]

    async def requeue_jobs(
        self,
        *,
        job_ids: Sequence[int] | None = None,
        statuses: Sequence[str] | None = None,
        job_type: str | None = None,
        since: datetime | None = None,
        error_contains: str | None = None,
        reset_attempts: bool = False,
        limit: int = 100,
        dry_run: bool = False,
        waiting: bool = False,
    ) -> list[Row]:
        """Jobs in ``statuses`` back to pending; never a processing one. Without statuses:
        failed, cancelled or pending jobs by id, failed ones by filter; a completed job only
        when ``statuses`` names it. ``waiting``: only pending jobs that wait with a reason
        (``JobDeferred``), made runnable now."""
        return await self.db.call(
            "mealworker_requeue_jobs",
            p_job_ids=list(job_ids) if job_ids else None,
            p_statuses=list(statuses) if statuses is not None else None,
            p_job_type=job_type,
            p_since=since,
            p_error_contains=error_contains,
            p_reset_attempts=reset_attempts,
            p_limit=limit,
            p_dry_run=dry_run,
            p_waiting=waiting,
        )

    async def prune(
        self,
        *,
        finished_before: datetime,
        statuses: Sequence[str] = ("completed", "cancelled"),
        events_before: datetime | None = None,
        batch: int = 5000,
        dry_run: bool = False,
    ) -> Pruned:
        """Delete finished jobs and old events, ``batch`` rows of each per transaction until
        none are left (``dry_run``: count them, delete nothing)."""
        pruned = Pruned(0, 0)
        while True:
            (row,) = await self.db.call(
                "mealworker_prune",
                p_finished_before=finished_before,
                p_statuses=list(statuses),
                p_events_before=events_before,
                p_limit=batch,
                p_dry_run=dry_run,
            )
            jobs, events = int(row["jobs"]), int(row["events"])
            pruned = Pruned(pruned.jobs + jobs, pruned.events + events)
            if dry_run or (jobs < batch and events < batch):
                return pruned

    async def cancel(self, job_ids: Sequence[int]) -> list[Cancellation]:
        """Cancel jobs, saying per job what happened; unknown ids are left out."""
        rows = await self.db.call("mealworker_cancel_jobs", p_job_ids=list(job_ids))
        return [
            Cancellation(
                int(row["job_id"]),
                str(row["status"]),
                str(row.get("previous_status") or row["status"]),
                str(row.get("outcome") or row["status"]),
            )
            for row in rows
        ]

    async def events_from(self, since: datetime, *, limit: int = 500) -> list[Row]:
        return await self.db.call("mealworker_events_from", p_since=since, p_limit=limit)

    async def recent_events(
        self,
        limit: int = 20,
        *,
        job_id: int | None = None,
        job_type: str | None = None,
        events: Sequence[str] | None = None,
    ) -> list[Row]:
        """The last ``limit`` events (of this job, type and events), oldest first."""
        return await self.db.call(
            "mealworker_recent_events",
            p_limit=limit,
            p_job_id=job_id,
            p_job_type=job_type,
            p_events=list(events) if events else None,
        )

    async def stats(self) -> dict[str, Any]:
        return dict(await self.db.value("mealworker_queue_stats") or {})

    async def events_since(
        self, after_id: int = 0, *, limit: int = 500, job_id: int | None = None
    ) -> list[Row]:
        return await self.db.call(
            "mealworker_events_since", p_after_id=after_id, p_limit=limit, p_job_id=job_id
        )
