"""The worker loop: claim in batches, run up to N jobs at once, never lose or double a result.

``run`` registers the worker, starts the side tasks (lease keeper, completer, sweeper, wake-ups)
and claims while there are free slots, sleeping between polls unless a NOTIFY, a freed slot or
the stop event wakes it. What happens to each claimed job is the ``Lifecycle``'s business;
``run_claimed`` hands it one job claimed elsewhere (``run-job``) with the same lease keeping.
``stop()`` (SIGTERM/SIGINT): stop claiming, let running jobs finish within the grace period,
release the rest without counting the attempt, mark the worker stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Callable
from functools import partial
from typing import Any, overload

from mealplan_cli import __version__
from mealplan_cli.core.handlers import HandlerRegistry
from mealplan_cli.core.queue import ClaimedJob, Queue
from mealplan_cli.core.worker.claims import Claim
from mealplan_cli.core.worker.config import WorkerConfig
from mealplan_cli.core.worker.heap import settle_garbage_collector
from mealplan_cli.core.worker.leases import LeaseKeeper
from mealplan_cli.core.worker.lifecycle import Lifecycle, WorkerReport
from mealplan_cli.core.worker.outage import Outage, retrying
from mealplan_cli.core.worker.refusals import Refusals, describe, may_pass
from mealplan_cli.core.worker.sweeper import Sweeper
from mealplan_cli.ops.errors import DatabaseError, DatabaseUnavailableError, SchemaMissingError
from mealplan_cli.ops.metrics import Health, WorkerMetrics

log = logging.getLogger("mealworker.worker")

SPLIT_CLAIMS_FROM = 100
"""From this concurrency on, a claim takes at most half the slots: the next claim is then on
its way while the jobs of the last one run, rather than the worker waiting for the database in
between (20,000 no-op jobs at concurrency 500: about 11,100 jobs/s against 10,700). Below it,
a batch runs in less time than a claim's round trip, and halving it only doubles the round
trips (at concurrency 4: 650 jobs/s against 1,200)."""


class Worker:
    @overload
    def __init__(
        self,
        queue: Queue,
        handlers: HandlerRegistry,
        config: WorkerConfig,
        *,
        resources: Any = None,
        metrics: WorkerMetrics | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        queue: Queue,
        handlers: HandlerRegistry,
        resources: Any,
        config: WorkerConfig,
        *,
        metrics: WorkerMetrics | None = None,
    ) -> None: ...

    def __init__(
        self,
        queue: Queue,
        handlers: HandlerRegistry,
        *args: Any,
        config: WorkerConfig | None = None,
        resources: Any = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """``Worker(queue, handlers, config, resources=...)``; the 0.1 form
        ``Worker(queue, handlers, resources, config)`` still works, for programs written
        against it (the peer benchmark's adapter among them)."""
        if len(args) == 2:
            resources, config = args
        elif len(args) == 1:
            (config,) = args
        if len(args) > 2 or not isinstance(config, WorkerConfig):
            raise TypeError("Worker(queue, handlers, config, *, resources=None, metrics=None)")
        self.queue = queue
        self.handlers = handlers
        self.config: WorkerConfig = config
        self.metrics = metrics or WorkerMetrics()
        self.health = Health(stale_after=max(3 * config.poll_interval, config.lease_seconds))
        self.outage = Outage(self.metrics, self.health)
        self.refusals = Refusals(self.health, rows_hold=config.refused_rows_hold)
        self.lifecycle = Lifecycle(
            queue,
            handlers,
            config,
            resources,
            self.metrics,
            self.outage,
            self._slot_freed,
            refusals=self.refusals,
        )
        self.metrics.active_jobs = lambda: self.lifecycle.claims.running
        self.leases = LeaseKeeper(
            queue,
            self.lifecycle.claims,
            config,
            self.outage,
            self.lifecycle.lease_lost,
            lambda: "draining" if self.stopping else "running",
            refusals=self.refusals,
        )
        self.sweeper = Sweeper(queue, config.sweep_interval, self.outage, self._wake_up)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._maybe_more = True
        self._to_start = 0
        """Jobs claimed and not started yet: their slots are taken all the same."""
        self._claim_batch = (
            config.concurrency
            if config.concurrency < SPLIT_CLAIMS_FROM
            else (config.concurrency + 1) // 2
        )

    @property
    def report(self) -> WorkerReport:
        return self.lifecycle.report

    @property
    def job_types(self) -> list[str]:
        return list(self.handlers)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming and shut down gracefully (safe to call from a signal handler)."""
        if not self._stopping.is_set():
            log.info("stopping: no new jobs; %d running", self.lifecycle.claims.running)
        self._stopping.set()
        self._wake.set()

    def _wake_up(self) -> None:
        self._wake.set()

    def _slot_freed(self) -> None:
        if self._maybe_more or self.config.until_empty:
            self._wake.set()

    async def _call(self, call: Callable[[], Any], *, until: float | None = None) -> Any:
        """``call()`` retried through an outage: while running, or ``until`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if until is None else loop.time() + until
        return await retrying(
            call,
            self.outage,
            lambda: self.stopping if deadline is None else loop.time() >= deadline,
        )

    async def run(self) -> WorkerReport:
        config = self.config
        settle_garbage_collector()
        try:
            await self._call(
                lambda: self.queue.register_worker(
                    config.worker_id,
                    socket.gethostname(),
                    os.getpid(),
                    __version__,
                    config.concurrency,
                    self.job_types,
                )
            )
        except DatabaseUnavailableError:
            if self.stopping:  # stopped before the database ever answered: nothing to undo
                return self.report
            raise
        side_tasks = self._side_tasks(claiming=True)
        claimer = asyncio.create_task(self._claim_loop(), name="claimer")
        try:
            done, _ = await asyncio.wait({claimer, *side_tasks}, return_when="FIRST_COMPLETED")
            for task in done:
                if task is not claimer and not task.cancelled() and task.exception():
                    log.critical("side task %s died: %r", task.get_name(), task.exception())
                    self.stop()
                    raise task.exception()  # type: ignore[misc]
            await claimer
            await self.lifecycle.release_unfinished(config.shutdown_grace)
        finally:
            self.health.loop_alive = False
            await _cancel(side_tasks)
            if not claimer.done():
                claimer.cancel()
        try:
            await self._call(lambda: self.queue.stop_worker(config.worker_id), until=5.0)
        except DatabaseUnavailableError:
            log.warning("could not mark worker %s stopped: database unavailable", config.worker_id)
        except SchemaMissingError:
            raise
        except DatabaseError as error:
            log.warning("could not mark worker %s stopped: %s", config.worker_id, error)
        return self.report

    async def run_claimed(
        self, job: ClaimedJob, on_progress: Callable[[Any], None] | None = None
    ) -> Claim:
        """Process one job claimed elsewhere (``run-job``): same lease keeping, same lost and
        cancel handling, same outcome writing. Returns its settled claim."""
        side_tasks = self._side_tasks(claiming=False)
        claim = self.lifecycle.start(job, on_progress)
        try:
            stopped = asyncio.create_task(self._stopping.wait())
            settled = asyncio.create_task(claim.wait_settled())
            await asyncio.wait({stopped, settled}, return_when="FIRST_COMPLETED")
            stopped.cancel()
            if claim.outcome is None:  # a signal: give the job back, as ``work`` would
                await self.lifecycle.release_unfinished(0)
                await settled
        finally:
            await _cancel(side_tasks)
        return claim

    def _side_tasks(self, *, claiming: bool) -> set[asyncio.Task[None]]:
        tasks = {
            asyncio.create_task(self.leases.run(), name="leases"),
            asyncio.create_task(self.lifecycle.completer.run(), name="completer"),
        }
        if claiming:
            tasks.add(asyncio.create_task(self.sweeper.run(), name="sweeper"))
            if self.config.listen:
                tasks.add(
                    asyncio.create_task(self.queue.wait_for_jobs(self._wake_up), name="wake-ups")
                )
        return tasks

    async def _claim_loop(self) -> None:
        config = self.config
        lifecycle = self.lifecycle
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            if self.refusals.systemic:
                await self._refused_pause()
                if self.stopping or (self.refusals.systemic and self.lifecycle.completer.busy):
                    continue  # the completer's retries of its batch tell when writes pass
            self._wake.clear()  # before claiming: a wake-up during the claim is not lost
            free = self._free_slots()
            if self.refusals.one_at_a_time and (lifecycle.claims or self._to_start):
                free = 0  # since a refused completion: one job at a time (``refusals``)
            if free > 0:
                wanted = 1 if self.refusals.one_at_a_time else min(free, self._claim_batch)
                try:
                    jobs = await self._claim(wanted)
                except DatabaseUnavailableError:
                    if self._stopping.is_set():
                        return
                    raise
                except SchemaMissingError:
                    raise
                except DatabaseError as error:
                    if may_pass(error):  # a deadlock, say: claim again after the poll delay
                        log.warning("claim failed, trying again: %s", describe(error))
                        await asyncio.sleep(self._poll_delay())
                    else:
                        self.refusals.refused("claim jobs", error)
                    continue
                self.refusals.accepted("claim jobs")
                self._maybe_more = len(jobs) == wanted
                if self._maybe_more and self._free_slots() > len(jobs) and not self.stopping:
                    # More are waiting and slots are left for them (counted now: the last
                    # batch's handlers may have ended during the claim): send the next claim
                    # first and start this batch while the database works on it. Starting a
                    # batch took the worker 1.5-2.3 ms per 250 jobs (with a timer per job then),
                    # with no claim on its way. With no slot left, nothing would be sent.
                    self._to_start += len(jobs)
                    loop.call_soon(self._start_claimed, jobs)
                else:
                    lifecycle.start_all(jobs)
                if self._maybe_more:
                    continue
                if config.until_empty and not lifecycle.claims and not lifecycle.completer.busy:
                    if await self.sweeper.sweep():
                        continue  # jobs whose worker died are runnable again: drain them too
                    return
            with contextlib.suppress(TimeoutError):  # not wait_for: no task per wait
                async with asyncio.timeout(self._poll_delay()):
                    await self._wake.wait()

    async def _refused_pause(self) -> None:
        """While the database refuses writes: wait for one to go through, for a stop, or for
        the time of the next try (backoff)."""
        stopped = asyncio.ensure_future(self._stopping.wait())
        accepted = asyncio.ensure_future(self.refusals.wait_accepted())
        await asyncio.wait(
            {stopped, accepted}, timeout=self.refusals.next_retry(), return_when="FIRST_COMPLETED"
        )
        for waiter in (stopped, accepted):
            waiter.cancel()
        await asyncio.gather(stopped, accepted, return_exceptions=True)

    def _free_slots(self) -> int:
        """Slots neither running a handler nor kept for a claimed batch not started yet."""
        return self.config.concurrency - self.lifecycle.claims.running - self._to_start

    def _start_claimed(self, jobs: list[ClaimedJob]) -> None:
        """A batch the claim loop left to start (``_to_start`` keeps its slots taken)."""
        self._to_start -= len(jobs)
        self.lifecycle.start_all(jobs)

    async def _claim(self, free: int) -> list[ClaimedJob]:
        """Claim up to ``free`` jobs. The results are written by the completer, on another
        connection at the same time: measured on 2 cores, that beats writing them in the same
        call as the claim (``claim_next`` can), which puts both in one serial transaction."""
        config = self.config
        _, jobs = await self._call(
            partial(
                self.queue.claim_next, config.worker_id, self.job_types, free, config.lease_seconds
            )
        )
        return list(jobs)

    def _poll_delay(self) -> float:
        return self.config.poll_interval * random.uniform(0.8, 1.2)


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
