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

Which of the two it is cannot always be told. A completion of no job that is refused too
(``check_completions``: a revoked grant, a statement trigger) is plain: the worker holds until
a write is accepted, however long. A *streak* (``SYSTEMIC_STREAK`` rows refused one after the
other, nothing saved between) is only a guess: three genuinely bad plans in a row look the same
as a guard refusing every plan, and held forever they would stop the queue for good. So a hold
that rests on a streak alone is a circuit breaker: after ``ROWS_HOLD`` seconds of the held rows
being refused again (and the check still passing), the held jobs fail with their own refusal,
and claiming resumes *half-open*: one job at a time, until a completion is saved again (then
fully). A refused completion while half-open holds again at once. The same one-at-a-time
claiming applies from the first refused completion until one is saved (``one_at_a_time``), so
that jobs which end fast do not pile up unwritten while refusals are sorted out. So bad plans
cost minutes, not the queue, and a guard refusing every plan fails the jobs in hand at the
first hold's end and then one per ``ROWS_HOLD``, instead of the whole queue at full speed. A
half-open probe rather than a timer alone, because a timer alone would claim ``concurrency``
jobs after each hold only to fail them all at the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mealplan_cli.core.db import sqlstate
from mealplan_cli.ops.errors import DatabaseError
from mealplan_cli.ops.metrics import Health
from mealplan_cli.ops.retry_policies import REFUSED_WRITES, REMINDERS, Backoff

log = logging.getLogger("mealworker.worker")

SYSTEMIC_STREAK = 3
"""Rows refused in a row, in batches of which no row was saved, after which the refusal is
taken for the worker's, not the jobs': the rows are kept and retried, no further job is failed
for it. A guard refusing every plan fails at most two before the worker holds; three plans
refused one after the other with nothing saved between them hold it too (it says so, and the
operator decides), for ``ROWS_HOLD`` at most."""

ROWS_HOLD = 120.0
"""Seconds a hold resting on a streak alone lasts before its rows fail with their own refusal
and claiming resumes, one job at a time (a hold of a refused check lasts until accepted)."""


def may_pass(error: DatabaseError) -> bool:
    """Whether the same write may succeed later (a deadlock may; a trigger's refusal may not)."""
    return sqlstate.temporary(error.code)


def describe(error: DatabaseError) -> str:
    """The database's own words, with the SQLSTATE: what an operator searches for."""
    text = str(error)
    return f"{text} (SQLSTATE {error.code})" if error.code else text


class Refusals:
    """Whether the database refuses every write now; logged like an outage."""

    def __init__(
        self,
        health: Health,
        *,
        clock: Callable[[], float] = time.monotonic,
        rows_hold: float = ROWS_HOLD,
    ) -> None:
        self.health = health
        self.clock = clock
        self.rows_hold = rows_hold
        self.since: float | None = None
        self.what: str | None = None
        """What the database refuses (``complete jobs``, ``claim jobs``...), while it does."""
        self.streak = 0
        """Rows refused in a row, nothing saved between them (reset by any accepted write)."""
        self.rows_only = False
        """The hold rests on a streak of refused rows alone: it ends after ``rows_hold``."""
        self.probing = False
        """Claiming resumed after a hold of rows (half-open): a refused completion holds
        again at once, until a completion is saved."""
        self.sorting = False
        """A refused batch is being written row by row."""
        self._accepted = asyncio.Event()
        self._accepted.set()
        self._next_reminder = 0.0
        self._reminders = Backoff(REMINDERS)
        self._retries = Backoff(REFUSED_WRITES)

    @property
    def systemic(self) -> bool:
        return self.since is not None

    @property
    def one_at_a_time(self) -> bool:
        """Whether to claim one job at a time, none while another is in hand: since a refused
        completion, until one is saved. Without it, a worker whose jobs end fast claims and
        finishes the whole queue while the first refusals are being sorted out, and a guard
        refusing every plan would fail all of it at the first hold's end."""
        return self.probing or self.sorting or self.streak > 0

    def rows_refused(self, count: int) -> bool:
        """A batch had every one of its ``count`` rows refused; true once enough rows were, in
        a row, that the refusal is the worker's (the caller then reports it with ``refused``)."""
        self.streak += count
        return self.probing or self.streak >= SYSTEMIC_STREAK

    def refused(self, what: str, error: DatabaseError, *, rows_only: bool = False) -> None:
        """Every write of ``what`` (a call, e.g. ``complete``) is refused: stop claiming.
        ``rows_only``: all the evidence is a streak of refused rows (the hold may end,
        ``hold_over``); anything else refused makes it a hold until a write is accepted."""
        self.health.writes_refused(describe(error))
        now = self.clock()
        if not rows_only and what == self.what:
            self.rows_only = False  # e.g. the check of no row is refused now: a grant
        if self.since is None:
            self.since = now
            self.what = what
            self.rows_only = rows_only
            self._accepted.clear()
            self._reminders.reset()
            self._next_reminder = now + self._reminders.next()
            self._retries.reset()
            log.error(
                "the database refuses to %s: %s; not claiming new jobs until it accepts "
                "(retrying with backoff%s)",
                what,
                describe(error),
                f", failing the held jobs after {self.rows_hold:g}s" if rows_only else "",
            )
        elif now >= self._next_reminder:
            self._next_reminder = now + self._reminders.next()
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
            self.probing = False
        elif self.since is None or what != self.what:
            return
        if self.since is not None:
            log.warning("the database accepts writes again after %.1fs", self.clock() - self.since)
            self._end()

    def hold_over(self) -> bool:
        """Whether a hold resting on refused rows alone has lasted ``rows_hold``: its rows
        are then to be failed (``release``), not kept."""
        if not self.rows_only or self.since is None:
            return False
        return self.clock() >= self.since + self.rows_hold

    def release(self, failed: int, error: DatabaseError) -> None:
        """The held rows were refused for ``rows_hold`` and ``failed`` jobs failed with their
        own refusal: claiming resumes, one job at a time until a completion is saved."""
        if self.since is None:
            return
        log.warning(
            "the database refused to complete the same %d job%s for %.0fs (%s) while it "
            "accepts a completion of no job: failed %s as refused by the database; claiming "
            "resumes, one job at a time until a result is saved",
            failed,
            "" if failed == 1 else "s",
            self.clock() - self.since,
            describe(error),
            "it" if failed == 1 else "them",
        )
        self.streak = 0
        self.probing = True
        self._end()

    def _end(self) -> None:
        self.since = None
        self.what = None
        self.rows_only = False
        self.health.writes_accepted()
        self._accepted.set()

    def next_retry(self) -> float:
        """Seconds to wait before the next try while refused (``REFUSED_WRITES``)."""
        return self._retries.next()

    async def wait_accepted(self) -> None:
        """Until a write is accepted again."""
        await self._accepted.wait()
