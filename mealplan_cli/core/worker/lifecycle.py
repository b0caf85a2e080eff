"""One job's life from claim to written outcome, the same for ``work`` and ``run-job``.

``start(job)`` records the claim and runs its handler as a task. The handler's end decides:

* a result joins the completion batch (written fenced, retried through a blip);
* a ``JobFailed`` is written as a failure (a retry is scheduled, or the job fails for good);
* a ``JobDeferred`` puts the job back to wait until its time, the attempt given back;
* cancellation because an operator cancelled: the cancel is recorded;
* cancellation because the lease was lost: nothing is written, another worker owns the job;
* cancellation at shutdown: the claim stays, and ``release_unfinished`` gives the job back.

Every outcome settles the claim (removes its record), so a later claim of the same job by the
same worker starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mealplan_cli.core.handlers import HandlerRegistry, JobContext
from mealplan_cli.core.queue import ClaimedJob, Queue
from mealplan_cli.core.worker.claims import Claim, Claims, ClaimState
from mealplan_cli.core.worker.completions import Completer
from mealplan_cli.core.worker.config import WorkerConfig
from mealplan_cli.core.worker.execute import execute, job_fields
from mealplan_cli.core.worker.outage import Outage, retrying
from mealplan_cli.core.worker.refusals import Refusals, describe, may_pass
from mealplan_cli.core.worker.time_limits import BatchTimeLimit
from mealplan_cli.ops.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    JobDeferred,
    JobFailed,
)
from mealplan_cli.ops.metrics import WorkerMetrics

log = logging.getLogger("mealworker.worker")

REFUSED = "refused"
"""``_record``'s answer when the database refused to record a job's outcome (not a status)."""


@dataclass
class WorkerReport:
    completed: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    released: int = 0
    lost: int = 0


class Lifecycle:
    def __init__(
        self,
        queue: Queue,
        handlers: HandlerRegistry,
        config: WorkerConfig,
        resources: Any,
        metrics: WorkerMetrics,
        outage: Outage,
        on_slot_free: Callable[[], None] = lambda: None,
        *,
        refusals: Refusals,
    ) -> None:
        self.queue = queue
        self.handlers = handlers
        self.config = config
        self.resources = resources
        self.metrics = metrics
        self.outage = outage
        self.on_slot_free = on_slot_free
        self.report = WorkerReport()
        self.claims = Claims()
        self.refusals = refusals
        self.completer = Completer(
            queue,
            outage,
            self._written,
            on_slot_free,
            refusals=refusals,
            on_refused=self._result_refused,
        )

    def start(self, job: ClaimedJob, on_progress: Callable[[Any], None] | None = None) -> Claim:
        return self.start_all([job], on_progress)[0]

    def start_all(
        self, jobs: list[ClaimedJob], on_progress: Callable[[Any], None] | None = None
    ) -> list[Claim]:
        """Start the handlers of jobs claimed together, under one time limit."""
        claims = [self._start(job, on_progress) for job in jobs]
        if claims:
            BatchTimeLimit(claims, self.config.job_timeout, self._time_is_up)
        return claims

    def _start(self, job: ClaimedJob, on_progress: Callable[[Any], None] | None) -> Claim:
        earlier = self.claims.of_job(job.id)
        if earlier is not None:
            self.lease_lost(earlier, "lost")  # a job has one lease: the new claim's
        claim = self.claims.add(job, self.config.lease_seconds)
        claim.task = asyncio.create_task(self._run(claim, on_progress))
        self.claims.running += 1
        claim.task.add_done_callback(self._task_done)
        return claim

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.claims.running -= 1
        self.on_slot_free()

    def _time_is_up(self, claim: Claim) -> None:
        if claim.state is ClaimState.RUNNING and claim.task is not None and not claim.task.done():
            claim.state = ClaimState.TIMED_OUT
            claim.task.cancel()

    def lease_lost(self, claim: Claim, reason: str) -> None:
        """The heartbeat says this claim's lease is gone (``cancelled`` by an operator, or
        ``lost`` to another worker / expiry): stop its handler."""
        extra = job_fields(claim.job)
        if reason == "cancelled":
            if claim.state is not ClaimState.RUNNING:
                return
            claim.state = ClaimState.CANCEL_REQUESTED
            log.warning("job %s: cancelled by an operator; stopping it", claim.job.id, extra=extra)
        else:
            if claim.state is ClaimState.LOST:
                return
            claim.state = ClaimState.LOST
            log.warning("job %s: lease lost; stopping it", claim.job.id, extra=extra)
        if claim.task is not None and not claim.task.done():
            claim.task.cancel()  # a completing claim needs nothing: its write will be refused

    async def _run(self, claim: Claim, on_progress: Callable[[Any], None] | None) -> None:
        # The per-job path is hot (thousands a second for no-op jobs): nothing is formatted or
        # built here that no one reads, log lines only when their level is on.
        job = claim.job
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "job %s (%s) started, attempt %d",
                job.id,
                job.job_type,
                job.attempts,
                extra=job_fields(job),
            )
        if job.attempts == 1 and job.created_at is not None:
            waited = time.time() - job.created_at.timestamp()
            self.metrics.pickup.observe(waited if waited > 0.0 else 0.0)
        context = JobContext(
            self.queue, job, self.resources, self.config.worker_id, on_progress=on_progress
        )
        handler = self.handlers.get(job.job_type)
        try:
            try:
                result = await execute(handler, job, context)
            finally:
                if claim.time_limit is not None:
                    claim.time_limit.ended(claim)
        except asyncio.CancelledError:
            if claim.state is ClaimState.TIMED_OUT:
                self.metrics.errors["TimeoutError"] += 1
                limit = f"timed out after {self.config.job_timeout:g}s"
                await asyncio.shield(self._fail(claim, limit, True))
                return
            if claim.state is ClaimState.CANCEL_REQUESTED:
                await asyncio.shield(self._fail(claim, "cancelled by an operator", True))
                return
            if claim.state is ClaimState.LOST:
                log.warning("job %s: lease lost, result dropped", job.id, extra=job_fields(job))
                self.report.lost += 1
                self.claims.settle(claim, "lost", "the lease was lost: another worker has it")
                return
            raise  # shutdown: released by release_unfinished
        except JobFailed as failure:
            self.metrics.errors[failure.kind] += 1
            await self._fail(claim, failure.message, failure.retryable)
        except JobDeferred as deferral:
            await self._defer(claim, deferral)
        else:
            seconds = time.monotonic() - claim.started
            usage = result.get("usage") if isinstance(result, dict) else None
            self.metrics.handler_finished(job.job_type, seconds, usage)
            if log.isEnabledFor(logging.INFO):
                log.info("job %s done in %.2fs", job.id, seconds, extra=job_fields(job))
            self.completer.add(claim, result)

    async def _record(
        self,
        claim: Claim,
        write: Callable[[], Awaitable[str | None]],
        doing: str,
        detail: str,
    ) -> str | None:
        """The job's outcome as the database records it: ``write``, retried through an outage
        while the lease may still hold. None: the lease was lost, or the database stayed out of
        reach. ``REFUSED``: the database refused the write; the job is settled as lost (it
        returns to the queue when its lease expires)."""
        job = claim.job

        def give_up() -> bool:
            return claim.state is ClaimState.LOST or time.monotonic() >= claim.lease_until

        try:
            return await retrying(write, self.outage, give_up)
        except DatabaseUnavailableError:
            return None
        except DatabaseError as refused:
            self.report.lost += 1
            log.error(
                "job %s: the database refused to %s (%s): %s; it returns to the queue when its "
                "lease expires",
                job.id,
                doing,
                detail,
                describe(refused),
                extra=job_fields(job),
            )
            self.claims.settle(claim, "lost", f"{detail}; {doing} refused: {refused}")
            return REFUSED

    async def _fail(self, claim: Claim, error: str, retryable: bool) -> None:
        job = claim.job
        extra = job_fields(job)
        outcome = await self._record(
            claim,
            lambda: self.queue.fail(job, error[:2000], retryable=retryable),
            "record its failure too",
            error,
        )
        if outcome == REFUSED:
            return
        if outcome == "pending":
            self.report.retried += 1
            self.metrics.retried[job.job_type] += 1
            log.warning("job %s failed, retry scheduled: %s", job.id, error, extra=extra)
        elif outcome == "failed":
            self.report.failed += 1
            self.metrics.failed[job.job_type] += 1
            log.error("job %s failed: %s", job.id, error, extra=extra)
        elif outcome == "cancelled":
            log.warning("job %s cancelled by an operator", job.id, extra=extra)
        else:
            self.report.lost += 1
            log.warning("job %s: lease lost before its failure was recorded", job.id, extra=extra)
        self.claims.settle(claim, outcome or "lost", error)

    async def _defer(self, claim: Claim, deferral: JobDeferred) -> None:
        """The handler asked its job to wait: back to pending until ``run_at``, no attempt
        spent; an operator's cancel in the meantime is recorded as a cancel."""
        job = claim.job
        extra = job_fields(job)
        reason = deferral.reason[:2000]
        outcome = await self._record(
            claim, lambda: self.queue.defer(job, deferral.run_at, reason), "defer it", reason
        )
        if outcome == REFUSED:
            return
        if outcome == "cancel_requested":
            await self._fail(claim, "cancelled by an operator", True)
            return
        if outcome == "pending":
            self.report.deferred += 1
            self.metrics.deferred[job.job_type] += 1
            log.warning(
                "job %s waits until %s: %s",
                job.id,
                deferral.run_at.isoformat(timespec="seconds"),
                reason,
                extra=extra,
            )
            self.claims.settle(claim, "deferred", reason)
            return
        self.report.lost += 1
        log.warning("job %s: lease lost before its deferral was recorded", job.id, extra=extra)
        self.claims.settle(claim, "lost", reason)

    async def _result_refused(self, claim: Claim, error: DatabaseError) -> None:
        """The database refused this job's result (its own row: the others were saved): the
        job fails with the database's words, after its attempts if the error may pass."""
        self.metrics.errors["DatabaseError"] += 1
        message = f"the database refused to save the result: {describe(error)}"
        await self._fail(claim, message, may_pass(error))

    def _written(self, claim: Claim, accepted: bool, refused: str | None = None) -> None:
        if accepted:
            self.report.completed += 1
            self.metrics.done[claim.job.job_type] += 1
            self.claims.settle(claim, "completed")
            return
        self.report.lost += 1
        if refused is not None:
            log.warning(
                "job %s: result not saved (%s); the job returns to the queue when its lease "
                "expires",
                claim.job.id,
                refused,
                extra=job_fields(claim.job),
            )
            self.claims.settle(claim, "lost", refused)
            return
        log.warning(
            "job %s: lease lost, result dropped (another worker owns it)",
            claim.job.id,
            extra=job_fields(claim.job),
        )
        self.claims.settle(claim, "lost", "the lease was lost: another worker took the job over")

    async def release_unfinished(self, grace: float) -> None:
        """Shutdown: wait ``grace`` seconds for running handlers, cancel the rest, write the
        finished results, and give the unfinished jobs back without counting the attempt."""
        tasks = [claim.task for claim in self.claims if claim.running and claim.task]
        if tasks:
            log.info("waiting up to %.0fs for %d running jobs", grace, len(tasks))
            await asyncio.wait(tasks, timeout=grace)
        unfinished = [claim for claim in self.claims if claim.running]
        for claim in unfinished:
            assert claim.task is not None
            claim.task.cancel()
        await asyncio.gather(*(c.task for c in unfinished if c.task), return_exceptions=True)
        self.completer.closing = True
        await self.completer.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.lease_seconds):
                await self.completer.wait_idle()
        held = [c for c in unfinished if c.outcome is None and c.state is not ClaimState.LOST]
        if not held:
            return
        deadline = time.monotonic() + 10.0
        try:
            released = await retrying(
                lambda: self.queue.release(self.config.worker_id, [c.job for c in held]),
                self.outage,
                lambda: time.monotonic() >= deadline,
            )
        except DatabaseUnavailableError:
            log.warning(
                "could not release %d jobs: they return when their leases expire", len(held)
            )
            return
        except DatabaseError as refused:
            log.warning(
                "could not release %d jobs (%s): they return when their leases expire",
                len(held),
                describe(refused),
            )
            return
        for claim in held:
            self.claims.settle(claim, "released")
        self.report.released += released
        log.warning("released %d unfinished jobs back to the queue", released)
