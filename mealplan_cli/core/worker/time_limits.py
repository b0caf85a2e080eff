"""Job time limits: one timer for the jobs started together, not one per job.

A timer per job cost the worker more than its own handlers did at thousands of no-op jobs a
second: every one went into the event loop's heap of timers for ``job_timeout`` seconds
(minutes), and was cancelled a millisecond later. The jobs of one claim start in the same
instant, so they share their deadline; one timer per batch stops those still running when it
fires, and is cancelled as soon as the last of them ends. (A handler cancelled before it ever
ran, at shutdown, never says it ended: its batch's timer then fires in its time and finds it
done, nothing to stop.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar


class TimeLimited(Protocol):
    """What a limit keeps on each job it covers (a worker's ``Claim``): the limit that still
    applies to it, if any."""

    time_limit: BatchTimeLimit[Any] | None


Limited = TypeVar("Limited", bound=TimeLimited)


class BatchTimeLimit(Generic[Limited]):
    """The deadline of the handlers started together; ``ended`` as each of them ends."""

    __slots__ = ("_claims", "_left", "_timer")

    def __init__(
        self, claims: list[Limited], seconds: float, time_is_up: Callable[[Limited], None]
    ) -> None:
        self._claims = claims
        self._left = len(claims)
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_at(
            loop.time() + seconds, self._fire, time_is_up
        )
        for claim in claims:
            claim.time_limit = self

    def _fire(self, time_is_up: Callable[[Limited], None]) -> None:
        self._timer = None
        for claim in self._claims:
            if claim.time_limit is self:
                time_is_up(claim)

    @property
    def armed(self) -> bool:
        """The timer still waits: it has neither fired nor been cancelled."""
        return self._timer is not None

    def ended(self, claim: Limited) -> None:
        """``claim``'s handler ended: the limit no longer applies to it."""
        claim.time_limit = None
        self._left -= 1
        if self._left == 0:
            self._claims = []  # nothing left to stop; let the claims go
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
