"""The worker loop: claim in batches, run up to N jobs at once, never lose or double a result.

Read top to bottom:

* ``run`` registers the worker, starts the side tasks (heartbeat, listener, sweeper, completer)
  and claims while there are free slots, sleeping between polls unless a NOTIFY, a freed slot or
  the stop event wakes it.
* Each job runs as a task with a timeout. Its result joins a batch that the completer writes
  in one call, fenced per job by its lease token; failures are written at once.
* The heartbeat extends every lease at lease/3. A lease reported lost (the job was taken over,
  or cancelled) cancels that job's task, and its result is dropped.
* ``stop()`` (SIGTERM/SIGINT): stop claiming, let running jobs finish within the grace period,
  release the rest without counting the attempt, mark the worker stopped.
* A database outage never kills the loop: calls are retried with backoff, and the outage is
  logged once when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from mealplan_cli import __version__
from mealplan_cli.db.base import DatabaseUnavailableError
from mealplan_cli.errors import MealworkerError
from mealplan_cli.generation.planner import Progress
from mealplan_cli.generation.services import GenerationServices
from mealplan_cli.handlers import Handler, HandlerRegistry, JobContext
from mealplan_cli.metrics import Health, WorkerMetrics
from mealplan_cli.queue import ClaimedJob, Completion, Queue

log = logging.getLogger("mealworker.worker")

T = TypeVar("T")

NOTIFY_CHANNEL = "mealworker_jobs"
COMPLETION_BATCH = 500


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def rss_bytes() -> int | None:
    """Resident memory of this process (Linux), for the workers table."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class WorkerConfig:
    worker_id: str = field(default_factory=default_worker_id)
    concurrency: int = 4
    poll_interval: float = 1.0
    lease_seconds: float = 60.0
    job_timeout: float = 900.0
    shutdown_grace: float = 30.0
    sweep_interval: float = 30.0
    until_empty: bool = False
    listen: bool = True


@dataclass
class WorkerReport:
    completed: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    lost: int = 0


def job_fields(job: ClaimedJob) -> dict[str, Any]:
    """The fields every log line about a job carries (besides the worker id)."""
    return {"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts}


class JobFailed(Exception):
    """A handler's failure, reduced to what the queue records: a message and whether to retry."""

    def __init__(self, message: str, retryable: bool, kind: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.kind = kind
        """The exception class behind it, for metrics (``ProviderUnavailableError``...)."""


async def execute(
    handler: Handler | None, job: ClaimedJob, context: JobContext, time_limit: float
) -> dict[str, Any] | None:
    """Run one job's handler; any failure becomes ``JobFailed`` (cancellation passes through)."""
    try:
        if handler is None:
            raise MealworkerError(f"no handler for job type {job.job_type!r}")
        async with asyncio.timeout(time_limit):
            return await handler(job, context)
    except TimeoutError:
        raise JobFailed(f"timed out after {time_limit:g}s", True, "TimeoutError") from None
    except MealworkerError as error:
        raise JobFailed(str(error), error.retryable, type(error).__name__) from None
    except Exception as error:  # a bug in a handler must not stop the worker
        log.exception("job %s: unexpected error", job.id, extra=job_fields(job))
        kind = type(error).__name__
        raise JobFailed(f"unexpected error: {kind}: {error}", True, kind) from None


class _Outage:
    """Logs a database outage once when it starts and once when it ends."""

    def __init__(self, metrics: WorkerMetrics, health: Health) -> None:
        self.since: float | None = None
        self.metrics = metrics
        self.health = health

    def failed(self, error: BaseException) -> None:
        self.metrics.database_errors += 1
        if self.since is None:
            self.since = time.monotonic()
            log.error("database unavailable (%s); retrying with backoff", error)

    def recovered(self) -> None:
        self.health.database_answered()
        if self.since is not None:
            log.warning("database reachable again after %.1fs", time.monotonic() - self.since)
            self.since = None


class Worker:
    def __init__(
        self,
        queue: Queue,
        handlers: HandlerRegistry,
        services: GenerationServices,
        config: WorkerConfig,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.queue = queue
        self.handlers = handlers
        self.services = services
        self.config = config
        self.report = WorkerReport()
        self.metrics = metrics or WorkerMetrics()
        self.metrics.active_jobs = lambda: len(self._active)
        if services.images is not None:
            stats = services.images.stats
            self.metrics.photo_counts = lambda: (stats.searches, stats.cache_hits)
        self.health = Health(stale_after=max(3 * config.poll_interval, config.lease_seconds))
        self._active: dict[int, tuple[ClaimedJob, asyncio.Task[None]]] = {}
        self._lost: set[int] = set()
        self._cancelled: set[int] = set()
        self._completions: list[Completion] = []
        self._completing: dict[int, ClaimedJob] = {}
        self._completions_ready = asyncio.Event()
        self._nothing_completing = asyncio.Event()
        self._nothing_completing.set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._maybe_more = True
        self._outage = _Outage(self.metrics, self.health)

    @property
    def job_types(self) -> list[str]:
        return list(self.handlers)

    def stop(self) -> None:
        """Stop claiming and shut down gracefully (safe to call from a signal handler)."""
        if not self._stopping.is_set():
            log.info("stopping: no new jobs; %d running", len(self._active))
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> WorkerReport:
        config = self.config
        await self._retry(
            lambda: self.queue.register_worker(
                config.worker_id,
                socket.gethostname(),
                os.getpid(),
                __version__,
                config.concurrency,
                self.job_types,
            )
        )
        side_tasks = {
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._completer(), name="completer"),
            asyncio.create_task(self._sweeper(), name="sweeper"),
        }
        if config.listen and self.queue.db.supports_listen:
            side_tasks.add(asyncio.create_task(self._listener(), name="listener"))
        claimer = asyncio.create_task(self._claim_loop(), name="claimer")
        try:
            done, _ = await asyncio.wait({claimer, *side_tasks}, return_when="FIRST_COMPLETED")
            for task in done:
                if task is not claimer and not task.cancelled() and task.exception():
                    log.critical("side task %s died: %r", task.get_name(), task.exception())
                    self.stop()
                    raise task.exception()  # type: ignore[misc]
            await claimer
            await self._drain()
        finally:
            self.health.loop_alive = False
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            if not claimer.done():
                claimer.cancel()
        try:
            await self._retry(lambda: self.queue.stop_worker(config.worker_id), until=5.0)
        except DatabaseUnavailableError:
            log.warning("could not mark worker %s stopped: database unavailable", config.worker_id)
        return self.report

    async def _claim_loop(self) -> None:
        config = self.config
        while not self._stopping.is_set():
            self._wake.clear()  # before claiming: a wake-up during the claim is not lost
            free = config.concurrency - len(self._active)
            if free > 0:
                try:
                    jobs = await self._retry(
                        partial(
                            self.queue.claim,
                            config.worker_id,
                            self.job_types,
                            free,
                            config.lease_seconds,
                        )
                    )
                except DatabaseUnavailableError:
                    if self._stopping.is_set():
                        return
                    raise
                for job in jobs:
                    self._start(job)
                self._maybe_more = len(jobs) == free
                if self._maybe_more:
                    continue
                if config.until_empty and not (
                    self._active or self._completions or self._completing
                ):
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_delay())

    def _poll_delay(self) -> float:
        return self.config.poll_interval * random.uniform(0.8, 1.2)

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        self._active[job.id] = (job, task)
        task.add_done_callback(lambda _: self._finished(job.id))

    def _finished(self, job_id: int) -> None:
        self._active.pop(job_id, None)
        if self._maybe_more or self.config.until_empty:
            self._wake.set()

    async def _run_job(self, job: ClaimedJob) -> None:
        handler = self.handlers.get(job.job_type)
        started = time.monotonic()
        extra = job_fields(job)
        log.debug(
            "job %s (%s) started, attempt %d", job.id, job.job_type, job.attempts, extra=extra
        )
        if job.attempts == 1 and job.created_at is not None:
            waited = (datetime.now(UTC) - job.created_at).total_seconds()
            self.metrics.pickup.observe(max(waited, 0.0))
        context = JobContext(self.queue, job, self.services, self.config.worker_id)
        try:
            result = await execute(handler, job, context, self.config.job_timeout)
        except asyncio.CancelledError:
            if job.id in self._cancelled:  # an operator's cancel: the database records it
                await asyncio.shield(self._fail(job, "cancelled by an operator", True))
                return
            if job.id in self._lost:
                log.warning("job %s: lease lost, result dropped", job.id, extra=extra)
            raise
        except JobFailed as failure:
            self.metrics.errors[failure.kind] += 1
            await self._fail(job, failure.message, failure.retryable)
        else:
            self._completing[job.id] = job
            self._nothing_completing.clear()
            self._completions.append(Completion(job, result))
            self._completions_ready.set()
            seconds = time.monotonic() - started
            usage = result.get("usage") if isinstance(result, dict) else None
            self.metrics.handler_finished(job.job_type, seconds, usage)
            log.info("job %s done in %.2fs", job.id, seconds, extra=extra)

    async def _fail(self, job: ClaimedJob, error: str, retryable: bool) -> None:
        if job.id in self._lost:
            return
        outcome = await self._retry(
            lambda: self.queue.fail(job, error[:2000], retryable=retryable),
            until=self.config.lease_seconds,
        )
        extra = job_fields(job)
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

    async def _completer(self) -> None:
        """Writes finished jobs in batches: one call completes many, each fenced by its token."""
        while True:
            await self._completions_ready.wait()
            await asyncio.sleep(0)  # let jobs finishing in the same tick join the batch
            await self._flush_completions()

    async def _flush_completions(self) -> None:
        while self._completions:
            batch = self._completions[:COMPLETION_BATCH]
            del self._completions[:COMPLETION_BATCH]
            try:
                written = await self._retry(partial(self.queue.complete, batch))
            finally:
                for completion in batch:
                    self._completing.pop(completion.job.id, None)
                if not self._completing:
                    self._nothing_completing.set()
            self.report.completed += len(written)
            for completion in batch:
                if completion.job.id in written:
                    self.metrics.done[completion.job.job_type] += 1
                else:
                    self.report.lost += 1
                    log.warning(
                        "job %s: lease lost, result dropped (another worker owns it)",
                        completion.job.id,
                        extra=job_fields(completion.job),
                    )
        self._completions_ready.clear()
        if self.config.until_empty:
            self._wake.set()

    async def _heartbeat(self) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            held = [job for job, _ in self._active.values()] + list(self._completing.values())
            try:
                lost = await self.queue.heartbeat(
                    self.config.worker_id,
                    held,
                    self.config.lease_seconds,
                    rss_bytes=rss_bytes(),
                    status="draining" if self.stopping else "running",
                )
                self._outage.recovered()
            except DatabaseUnavailableError as error:
                self._outage.failed(error)
                continue
            for lease in lost:
                entry = self._active.get(lease.job_id)
                if entry is None:  # finished (and written) while the heartbeat was in flight
                    continue
                extra = job_fields(entry[0])
                if lease.reason == "cancelled":
                    self._cancelled.add(lease.job_id)
                    log.warning(
                        "job %s: cancelled by an operator; stopping it", lease.job_id, extra=extra
                    )
                else:
                    if lease.job_id not in self._lost:
                        self.report.lost += 1
                    self._lost.add(lease.job_id)
                    log.warning("job %s: lease lost; stopping it", lease.job_id, extra=extra)
                entry[1].cancel()

    async def _sweeper(self) -> None:
        """Puts back jobs whose worker died (lease expired): no cron needed for that."""
        while True:
            await asyncio.sleep(self.config.sweep_interval * random.uniform(0.8, 1.2))
            try:
                requeued = await self.queue.requeue_stale()
            except DatabaseUnavailableError as error:
                self._outage.failed(error)
                continue
            if requeued:
                log.warning("requeued %d jobs whose lease expired", len(requeued))
                self._wake.set()

    async def _listener(self) -> None:
        await self.queue.db.listen(NOTIFY_CHANNEL, lambda _: self._wake.set())

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period; release the rest."""
        config = self.config
        tasks = [task for _, task in self._active.values()]
        if tasks:
            log.info("waiting up to %.0fs for %d running jobs", config.shutdown_grace, len(tasks))
            await asyncio.wait(tasks, timeout=config.shutdown_grace)
        unfinished = [(job, task) for job, task in self._active.values() if not task.done()]
        for _, task in unfinished:
            task.cancel()
        await asyncio.gather(*(task for _, task in unfinished), return_exceptions=True)
        await self._flush_completions()
        with contextlib.suppress(TimeoutError):  # the completer's last batch
            await asyncio.wait_for(self._nothing_completing.wait(), config.lease_seconds)
        if unfinished:
            jobs = [job for job, _ in unfinished if job.id not in self._lost]
            released = await self._retry(
                lambda: self.queue.release(config.worker_id, jobs), until=10.0
            )
            self.report.released += released
            log.warning("released %d unfinished jobs back to the queue", released)

    async def _retry(self, call: Callable[[], Awaitable[T]], *, until: float | None = None) -> T:
        """``call()``, retried while the database is unavailable (for ``until`` seconds at most,
        or while the worker is running when ``until`` is None)."""
        started = time.monotonic()

        def give_up(state: Any) -> bool:
            elapsed = time.monotonic() - started
            return (until is not None and elapsed >= until) or (
                until is None and self._stopping.is_set()
            )

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DatabaseUnavailableError),
            wait=wait_random_exponential(multiplier=0.2, max=10),
            stop=give_up,
            before_sleep=lambda state: self._outage.failed(state.outcome.exception()),  # type: ignore[union-attr,arg-type]
            reraise=True,
        ):
            with attempt:
                result = await call()
            outcome = attempt.retry_state.outcome
            if outcome is not None and not outcome.failed:
                self._outage.recovered()
                return result
        raise AssertionError("unreachable: tenacity returns or raises")


@dataclass
class SingleRun:
    """The outcome of ``run_single``: completed, or failed with the error and its new status."""

    completed: bool
    error: str | None = None
    status: str | None = None


async def run_single(
    queue: Queue,
    handlers: HandlerRegistry,
    services: GenerationServices,
    job: ClaimedJob,
    *,
    worker_id: str,
    lease_seconds: float,
    time_limit: float,
    on_progress: Callable[[Progress], None] | None = None,
) -> SingleRun:
    """Process one claimed job in the foreground (``run-job``), its lease kept alive meanwhile."""
    context = JobContext(queue, job, services, worker_id, on_progress=on_progress)

    async def keep_lease() -> None:
        while True:
            await asyncio.sleep(lease_seconds / 3)
            with contextlib.suppress(DatabaseUnavailableError):
                await queue.heartbeat(worker_id, [job], lease_seconds)

    keeper = asyncio.create_task(keep_lease())
    try:
        result = await execute(handlers.get(job.job_type), job, context, time_limit)
    except JobFailed as failure:
        status = await queue.fail(job, failure.message[:2000], retryable=failure.retryable)
        return SingleRun(False, failure.message, status)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    written = await queue.complete([Completion(job, result)])
    if job.id not in written:
        return SingleRun(False, "the lease was lost: another worker took the job over", None)
    return SingleRun(True)
