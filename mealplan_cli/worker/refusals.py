"""Writes the database refuses: one job's problem, or the whole worker's.

A database that answers but refuses a write (an app's trigger raising, a constraint, a revoked
grant) is not an outage: retrying the same write the same way gets the same answer. What it
means depends on how much is refused:

* some rows of a batch are saved and one is refused: that job alone fails, with the database's
  own words (the trigger's text and the SQLSTATE), after its attempts if the error may pass;
* every write is refused (a revoked grant, a trigger refusing everything): the worker stops
  claiming, says what was refused and by what, retries with backoff, and keeps its jobs.

``Refusals`` keeps the second state and reports it the way ``Outage`` reports an outage: once
when it starts, with backoff while it lasts, once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from mealplan_cli.errors import DatabaseError
from mealplan_cli.metrics import Health

log = logging.getLogger("mealworker.worker")

FIRST_REMINDER = 5.0
MAX_REMINDER = 60.0
FIRST_RETRY = 0.5
MAX_RETRY = 30.0

SYSTEMIC_STREAK = 3
"""Rows refused in a row, in batches of which no row was saved, after which the refusal is
taken for the worker's, not the jobs': the rows are kept and retried, no further job is failed
for it. A guard refusing every plan fails at most two before the worker holds; three plans
refused one after the other with nothing saved between them hold it too (it says so, and the
operator decides)."""

_TEMPORARY_STATES = ("08", "40", "53", "55P03", "57014", "57P")
"""SQLSTATEs a later try may get past: connection, serialization failure and deadlock, out of
resources, lock not available, statement timeout, server shutting down."""

_PRIVILEGE = re.compile(
    r"permission denied for (table|function|schema|sequence|view|relation|column) ", re.I
)


def may_pass(error: DatabaseError) -> bool:
    """Whether the same write may succeed later (a deadlock may; a trigger's refusal may not)."""
    return bool(error.code) and str(error.code).startswith(_TEMPORARY_STATES)


def describe(error: DatabaseError) -> str:
    """The database's own words, with the SQLSTATE: what an operator searches for."""
    text = str(error)
    return f"{text} (SQLSTATE {error.code})" if error.code else text


def missing_privilege(message: str) -> bool:
    """The server's own "permission denied for table ..." (a grant), not a trigger's text."""
    return bool(_PRIVILEGE.search(message))


class Refusals:
    """Whether the database refuses every write now; logged like an outage."""

    def __init__(self, health: Health, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.health = health
        self.clock = clock
        self.since: float | None = None
        self.what: str | None = None
        """What the database refuses (``complete jobs``, ``claim jobs``...), while it does."""
        self.streak = 0
        """Rows refused in a row, nothing saved between them (reset by any accepted write)."""
        self._accepted = asyncio.Event()
        self._accepted.set()
        self._next_reminder = 0.0
        self._reminder_gap = FIRST_REMINDER
        self._retry_gap = FIRST_RETRY

    @property
    def systemic(self) -> bool:
        return self.since is not None

    def rows_refused(self, count: int) -> bool:
        """A batch had every one of its ``count`` rows refused; true once enough rows were, in
        a row, that the refusal is the worker's (the caller then reports it with ``refused``)."""
        self.streak += count
        return self.streak >= SYSTEMIC_STREAK

    def refused(self, what: str, error: DatabaseError) -> None:
        """Every write of ``what`` (a call, e.g. ``complete``) is refused: stop claiming."""
        self.health.writes_refused(describe(error))
        now = self.clock()
        if self.since is None:
            self.since = now
            self.what = what
            self._accepted.clear()
            self._reminder_gap = FIRST_REMINDER
            self._next_reminder = now + self._reminder_gap
            self._retry_gap = FIRST_RETRY
            log.error(
                "the database refuses to %s: %s; not claiming new jobs until it accepts "
                "(retrying with backoff)",
                what,
                describe(error),
            )
        elif now >= self._next_reminder:
            self._reminder_gap = min(self._reminder_gap * 2, MAX_REMINDER)
            self._next_reminder = now + self._reminder_gap
            log.error(
                "the database still refuses to %s after %.0fs: %s; retrying with backoff",
                what,
                now - self.since,
                describe(error),
            )

    def accepted(self, what: str | None = None) -> None:
        """A completion (or, with ``what``, a write of that kind) went through: jobs are
        claimed again, unless what went through is not what was refused. Only a completion
        ends a streak of refused rows: claims and heartbeats pass between them all along."""
        if what is None:
            self.streak = 0
        elif self.since is None or what != self.what:
            return
        if self.since is not None:
            log.warning("the database accepts writes again after %.1fs", self.clock() - self.since)
            self.since = None
            self.what = None
            self.health.writes_accepted()
            self._accepted.set()

    def next_retry(self) -> float:
        """Seconds to wait before the next try while refused (doubling, capped)."""
        gap = self._retry_gap
        self._retry_gap = min(self._retry_gap * 2, MAX_RETRY)
        return gap

    async def wait_accepted(self) -> None:
        """Until a write is accepted again."""
        await self._accepted.wait()
