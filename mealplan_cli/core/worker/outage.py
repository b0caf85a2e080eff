"""Database outages: calls retried with backoff, the outage reported while it lasts.

An operator watching the log of a worker that cannot reach its database must see it say so:
once when it starts, again with backoff (at least once a minute) while it lasts, and once when
it ends. ``/healthz`` turns 503 at the first failed call, not after a minute of silence.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mealplan_cli.ops.errors import DatabaseUnavailableError
from mealplan_cli.ops.metrics import Health, WorkerMetrics
from mealplan_cli.ops.retry_policies import (
    DATABASE_OUTAGE,
    DATABASE_OUTAGE_FIRST_RETRY,
    REMINDERS,
    Backoff,
)

log = logging.getLogger("mealworker.worker")

T = TypeVar("T")


class Outage:
    """Logs a database outage when it starts, with backoff while it lasts, and when it ends."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        health: Health,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.since: float | None = None
        self._next_reminder = 0.0
        self._reminders = Backoff(REMINDERS)

    def failed(self, error: BaseException) -> None:
        self.metrics.database_errors += 1
        self.health.database_failed(str(error))
        now = self.clock()
        if self.since is None:
            self.since = now
            self._reminders.reset()
            self._next_reminder = now + self._reminders.next()
            log.error("database unavailable (%s); retrying with backoff", error)
        elif now >= self._next_reminder:
            self._next_reminder = now + self._reminders.next()
            log.error(
                "database still unavailable after %.0fs (%s); retrying with backoff",
                now - self.since,
                error,
            )

    def recovered(self) -> None:
        self.health.database_answered()
        if self.since is not None:
            log.warning("database reachable again after %.1fs", self.clock() - self.since)
            self.since = None


async def retrying(
    call: Callable[[], Awaitable[T]], outage: Outage, give_up: Callable[[], bool]
) -> T:
    """``call()``, retried while the database is unavailable and ``give_up()`` is false; the
    last ``DatabaseUnavailableError`` is raised when it gives up."""

    try:  # the usual case first, without tenacity's per-call bookkeeping (a hot path)
        result = await call()
    except DatabaseUnavailableError as error:
        outage.failed(error)
        if give_up():
            raise
        await asyncio.sleep(random.uniform(0, DATABASE_OUTAGE_FIRST_RETRY))
    else:
        outage.recovered()
        return result

    # tenacity's loop starts on the first failure only: a healthy call has no bookkeeping.
    from tenacity import AsyncRetrying, retry_if_exception_type

    def stop(state: Any) -> bool:
        return give_up()

    def before_sleep(state: Any) -> None:
        outage.failed(state.outcome.exception())

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DatabaseUnavailableError),
            wait=DATABASE_OUTAGE,
            stop=stop,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                result = await call()
            outcome = attempt.retry_state.outcome
            if outcome is not None and not outcome.failed:
                outage.recovered()
                return result
    except DatabaseUnavailableError as error:  # gave up: the last failure counts too
        outage.failed(error)
        raise
    raise AssertionError("unreachable: tenacity returns or raises")
