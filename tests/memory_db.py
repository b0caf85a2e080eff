"""An in-memory ``Database`` speaking the queue's SQL-function protocol, for fast unit tests
of the worker loop's edge cases (the real-PostgreSQL tests check the SQL itself).

It implements the functions the worker calls with the same meaning as the migrations, and can
be made unavailable (``fail(function, times)``, ``down``) to provoke outages and blips.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mealplan_cli.db.base import Row
from mealplan_cli.errors import DatabaseUnavailableError


@dataclass
class MemoryJob:
    id: int
    job_type: str
    payload: dict[str, Any]
    priority: int = 0
    max_attempts: int = 5
    run_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = "pending"
    attempts: int = 0
    locked_by: str | None = None
    lease_token: uuid.UUID | None = None
    lease_expires_at: datetime | None = None
    last_error: str | None = None
    cancel_requested: bool = False
    result: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    idempotency_key: str | None = None


class MemoryDatabase:
    transport = "memory"
    supports_listen = False

    def __init__(self) -> None:
        self.jobs: dict[int, MemoryJob] = {}
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.down = False
        self.on_call: Callable[[str], None] | None = None

    def fail(self, function: str, times: int) -> None:
        """The next ``times`` calls of ``function`` raise ``DatabaseUnavailableError``."""
        self.faults[function] += times

    def expire(self, job_id: int) -> None:
        self.jobs[job_id].lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)

    async def call(self, function: str, **params: Any) -> list[Row]:
        self.calls[function] += 1
        if self.on_call is not None:
            self.on_call(function)
        if self.down or self.faults[function] > 0:
            if self.faults[function] > 0:
                self.faults[function] -= 1
            raise DatabaseUnavailableError(f"{function}: connection refused (memory)")
        method = getattr(self, "_" + function.removeprefix("mealworker_"))
        rows: list[Row] = method(**params)
        return rows

    async def value(self, function: str, **params: Any) -> Any:
        rows = await self.call(function, **params)
        return next(iter(rows[0].values())) if rows else None

    async def listen(self, channel: str, on_notify: Callable[[str], None]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    # --- the functions ---------------------------------------------------------------------

    def _add(self, job_type: str, payload: dict[str, Any], **fields: Any) -> MemoryJob:
        job = MemoryJob(len(self.jobs) + 1, job_type, payload, **fields)
        self.jobs[job.id] = job
        return job

    def _enqueue_jobs(
        self,
        p_job_type: str,
        p_payloads: list[dict[str, Any]],
        p_priority: int = 0,
        p_max_attempts: int = 5,
        p_run_at: datetime | None = None,
    ) -> list[Row]:
        fields: dict[str, Any] = {"priority": p_priority, "max_attempts": p_max_attempts}
        if p_run_at is not None:
            fields["run_at"] = p_run_at
        return [{"id": self._add(p_job_type, p, **fields).id} for p in p_payloads]

    def _enqueue_job(
        self,
        p_job_type: str,
        p_payload: dict[str, Any],
        p_priority: int = 0,
        p_max_attempts: int = 5,
        p_run_at: datetime | None = None,
        p_idempotency_key: str | None = None,
    ) -> list[Row]:
        for job in self.jobs.values():
            if p_idempotency_key and (job.job_type, job.idempotency_key) == (
                p_job_type,
                p_idempotency_key,
            ):
                return [{"job_id": job.id, "created": False}]
        fields: dict[str, Any] = {"priority": p_priority, "max_attempts": p_max_attempts}
        if p_run_at is not None:
            fields["run_at"] = p_run_at
        job = self._add(p_job_type, p_payload, idempotency_key=p_idempotency_key, **fields)
        return [{"job_id": job.id, "created": True}]

    def _lease(self, job: MemoryJob, worker_id: str, lease_seconds: float) -> Row:
        job.status = "processing"
        job.attempts += 1
        job.locked_by = worker_id
        job.lease_token = uuid.uuid4()
        job.lease_expires_at = datetime.now(UTC) + timedelta(seconds=lease_seconds)
        return {
            "id": job.id,
            "job_type": job.job_type,
            "payload": job.payload,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "priority": job.priority,
            "lease_token": job.lease_token,
            "lease_expires_at": job.lease_expires_at,
            "created_at": job.created_at,
        }

    def _claim_jobs(
        self, p_worker_id: str, p_job_types: list[str], p_limit: int, p_lease_seconds: float
    ) -> list[Row]:
        now = datetime.now(UTC)
        runnable = [
            j
            for j in self.jobs.values()
            if j.status == "pending" and j.run_at <= now and j.job_type in p_job_types
        ]
        runnable.sort(key=lambda j: (-j.priority, j.run_at, j.id))
        return [self._lease(j, p_worker_id, p_lease_seconds) for j in runnable[:p_limit]]

    def _claim_job(
        self, p_job_id: int, p_worker_id: str, p_lease_seconds: float, p_force: bool = False
    ) -> list[Row]:
        job = self.jobs.get(p_job_id)
        if job is None or (job.status != "pending" and not p_force):
            return []
        return [self._lease(job, p_worker_id, p_lease_seconds)]

    def _held(self, job_id: int, token: uuid.UUID) -> MemoryJob | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.lease_token == token else None

    def _heartbeat(
        self,
        p_worker_id: str,
        p_job_ids: list[int],
        p_lease_tokens: list[uuid.UUID],
        p_lease_seconds: float,
        **_: Any,
    ) -> list[Row]:
        lost = []
        for job_id, token in zip(p_job_ids, p_lease_tokens, strict=True):
            job = self._held(job_id, token)
            if job is None:
                lost.append({"job_id": job_id, "reason": "lost"})
                continue
            job.lease_expires_at = datetime.now(UTC) + timedelta(seconds=p_lease_seconds)
            if job.cancel_requested:
                lost.append({"job_id": job_id, "reason": "cancelled"})
        return lost

    def _register_worker(self, **_: Any) -> list[Row]:
        return [{"value": None}]

    def _stop_worker(self, **_: Any) -> list[Row]:
        return [{"value": None}]

    def _report_progress(self, p_job_id: int, p_lease_token: uuid.UUID, **_: Any) -> list[Row]:
        return [{"value": self._held(p_job_id, p_lease_token) is not None}]

    def _finish(self, job: MemoryJob, status: str) -> None:
        job.status = status
        job.lease_token = None
        job.lease_expires_at = None

    def _complete_jobs(
        self,
        p_job_ids: list[int],
        p_lease_tokens: list[uuid.UUID],
        p_results: list[dict[str, Any] | None],
    ) -> list[Row]:
        done = []
        for job_id, token, result in zip(p_job_ids, p_lease_tokens, p_results, strict=True):
            job = self._held(job_id, token)
            if job is not None:
                self._finish(job, "completed")
                job.result = result
                done.append({"id": job_id})
        return done

    def _claim_next(
        self,
        p_worker_id: str,
        p_job_types: list[str],
        p_limit: int,
        p_lease_seconds: float,
        p_job_ids: list[int],
        p_lease_tokens: list[uuid.UUID],
        p_results: list[dict[str, Any] | None],
    ) -> list[Row]:
        """``mealworker_complete_jobs`` then ``mealworker_claim_jobs`` in one call; a fault
        injected into either makes the whole call fail, as one transaction would."""
        for part in ("mealworker_complete_jobs", "mealworker_claim_jobs"):
            if part == "mealworker_complete_jobs" and not p_job_ids:
                continue
            if self.faults[part] > 0:
                self.faults[part] -= 1
                raise DatabaseUnavailableError(f"{part}: connection refused (memory)")
        done = self._complete_jobs(p_job_ids, p_lease_tokens, p_results) if p_job_ids else []
        claimed = self._claim_jobs(p_worker_id, p_job_types, p_limit, p_lease_seconds)
        return [{"id": None, "completed": row["id"]} for row in done] + [
            {**row, "completed": None} for row in claimed
        ]

    def _fail_job(
        self, p_job_id: int, p_lease_token: uuid.UUID, p_error: str, p_retryable: bool
    ) -> list[Row]:
        job = self._held(p_job_id, p_lease_token)
        if job is None:
            return [{"value": None}]
        job.last_error = p_error
        if job.cancel_requested:
            status = "cancelled"
        elif p_retryable and job.attempts < job.max_attempts:
            status = "pending"
            job.run_at = datetime.now(UTC)
        else:
            status = "failed"
        self._finish(job, status)
        return [{"value": status}]

    def _release_jobs(
        self, p_worker_id: str, p_job_ids: list[int], p_lease_tokens: list[uuid.UUID]
    ) -> list[Row]:
        released = 0
        for job_id, token in zip(p_job_ids, p_lease_tokens, strict=True):
            job = self._held(job_id, token)
            if job is not None:
                self._finish(job, "pending")
                job.attempts -= 1
                released += 1
        return [{"value": released}]

    def _requeue_stale(self, p_limit: int = 1000) -> list[Row]:
        now = datetime.now(UTC)
        rows = []
        for job in self.jobs.values():
            if job.status == "processing" and job.lease_expires_at and job.lease_expires_at < now:
                self._finish(job, "pending" if job.attempts < job.max_attempts else "failed")
                rows.append({"job_id": job.id, "status": job.status})
        return rows[:p_limit]

    def _cancel_jobs(self, p_job_ids: list[int]) -> list[Row]:
        rows = []
        for job_id in p_job_ids:
            job = self.jobs[job_id]
            if job.status == "pending":
                self._finish(job, "cancelled")
            elif job.status == "processing":
                job.cancel_requested = True
            rows.append({"job_id": job_id, "status": job.status})
        return rows

    def _requeue_jobs(
        self, p_job_ids: list[int] | None = None, p_statuses: list[str] | None = None, **_: Any
    ) -> list[Row]:
        rows = []
        for job in self.jobs.values():
            if (p_job_ids is None or job.id in p_job_ids) and job.status in (p_statuses or []):
                job.status = "pending"
                job.cancel_requested = False
                job.run_at = datetime.now(UTC)
                rows.append({"job_id": job.id})
        return rows
