"""Every retry and backoff of mealworker, in one place: tenacity waits and stops, named per use.

A reader who wonders how long the worker waits between two tries of anything looks here, not
in the loop that tries. The loops run these policies with tenacity (``AsyncRetrying``) where
they retry one call; where the waiting is spread over a state that outlives a call (an outage's
log reminders, a refusal's retries that the claim loop and the completer share), ``Backoff``
steps the same tenacity wait by hand.

Nothing here imports the rest of the package: every layer (database, worker, generation) may
use it.
"""

from __future__ import annotations

from tenacity import (
    RetryCallState,
    Retrying,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

DATABASE_OUTAGE = wait_random_exponential(multiplier=0.2, max=10)
"""A call the database could not answer (``worker.outage.retrying``): jittered, so that the
workers of a fleet do not come back all at once, and at most 10 s apart."""

DATABASE_OUTAGE_FIRST_RETRY = 0.2
"""The first retry of such a call waits up to this (jittered), before tenacity takes over."""

DATABASE_AT_START = wait_exponential(multiplier=0.5, max=10)
"""A worker starting while its database cannot be reached yet: 0.5 s, doubling, 10 s apart."""

REFUSED_WRITES = wait_exponential(multiplier=0.5, max=30)
"""A write the database refuses while it refuses every write (``worker.refusals``): 0.5 s,
doubling, 30 s apart."""

REMINDERS = wait_exponential(multiplier=5, max=60)
"""How often a lasting outage or refusal is said again in the log: after 5 s, doubling, at
least once a minute."""

OPENAI_BACKOFF = wait_random_exponential(multiplier=1, max=30)
"""A transient OpenAI failure without a Retry-After of the server's: jittered, 30 s apart."""

OPENAI_MAX_RETRY_AFTER = 60.0
"""The server's Retry-After is honoured up to this many seconds."""


def openai_attempts(attempts: int) -> stop_base:
    """An OpenAI call is tried this many times in all (``OPENAI_MAX_ATTEMPTS``)."""
    return stop_after_attempt(attempts)


class Backoff:
    """A tenacity wait stepped by hand: ``next()`` is the wait before the next try, growing as
    the policy says, until ``reset()``."""

    def __init__(self, wait: wait_base) -> None:
        self.wait = wait
        self._state = RetryCallState(Retrying(), None, (), {})

    def next(self) -> float:
        gap = float(self.wait(self._state))
        self._state.attempt_number += 1
        return gap

    def reset(self) -> None:
        self._state.attempt_number = 1
