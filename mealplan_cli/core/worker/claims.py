"""One record per claim, keyed by its lease token, removed when the job's outcome is written.

A job id is not a claim: after the stale sweep puts a job back, the same worker may claim it
again under a new token, and what happened to the first claim (lost, cancelled) must not stick
to the second. So every piece of state about a running job lives on its ``Claim``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING
from uuid import UUID

from mealplan_cli.core.queue import ClaimedJob

if TYPE_CHECKING:
    from mealplan_cli.core.worker.time_limits import BatchTimeLimit


class ClaimState(Enum):
    RUNNING = "running"
    LOST = "lost"
    """Another worker owns the job now (or its lease expired): the result must be dropped."""
    CANCEL_REQUESTED = "cancel requested"
    """An operator cancelled it: stop the handler and record the cancel."""
    TIMED_OUT = "timed out"
    """The handler ran past the job's time limit: stop it and record a retryable failure."""
    COMPLETING = "completing"
    """The handler returned; its result waits in the completion batch."""


@dataclass(slots=True)
class Claim:
    job: ClaimedJob
    lease_seconds: float
    started: float
    lease_until: float
    """When the lease runs out by this worker's clock, unless extended (monotonic)."""
    state: ClaimState = ClaimState.RUNNING
    task: asyncio.Task[None] | None = None
    time_limit: BatchTimeLimit[Claim] | None = None
    """Stops the handler when the job's time is up (let go of when the handler ends)."""
    outcome: str | None = None
    """What was written: completed, pending (retry), deferred, failed, cancelled, released, or
    lost."""
    error: str | None = None
    settled: asyncio.Future[None] | None = None
    """Made on demand by ``wait_settled`` (most claims are never waited for)."""

    async def wait_settled(self) -> None:
        if self.outcome is not None:
            return
        if self.settled is None:
            self.settled = asyncio.get_running_loop().create_future()
        await asyncio.shield(self.settled)

    @property
    def token(self) -> UUID:
        return self.job.lease_token

    @property
    def running(self) -> bool:
        """The handler still runs (it occupies a slot)."""
        return self.task is not None and not self.task.done()

    def extended(self, sent_at: float) -> None:
        self.lease_until = max(self.lease_until, sent_at + self.lease_seconds)


class Claims:
    """Every claim this worker holds."""

    def __init__(self) -> None:
        self._by_token: dict[UUID, Claim] = {}
        self._latest: dict[int, Claim] = {}
        """The newest unsettled claim of each job id (a job has one lease at a time)."""
        self.running = 0
        """Claims whose handler still runs (each occupies a slot); kept by the lifecycle."""

    def add(self, job: ClaimedJob, lease_seconds: float) -> Claim:
        now = time.monotonic()
        claim = Claim(job, lease_seconds, now, now + lease_seconds)
        self._by_token[claim.token] = claim
        self._latest[job.id] = claim
        return claim

    def get(self, token: UUID) -> Claim | None:
        return self._by_token.get(token)

    def of_job(self, job_id: int) -> Claim | None:
        """This worker's newest unsettled claim of the job, if any."""
        return self._latest.get(job_id)

    def settle(self, claim: Claim, outcome: str, error: str | None = None) -> None:
        """The claim's outcome is written (or, for ``lost``, dropped): forget it."""
        claim.outcome = outcome
        claim.error = error
        self._by_token.pop(claim.token, None)
        if self._latest.get(claim.job.id) is claim:
            del self._latest[claim.job.id]
        if claim.settled is not None and not claim.settled.done():
            claim.settled.set_result(None)

    def __iter__(self) -> Iterator[Claim]:
        return iter(list(self._by_token.values()))

    def __len__(self) -> int:
        return len(self._by_token)
