"""Completion batching: finished jobs written many per call, each fenced by its lease token.

A result that took a minute of OpenAI time must survive a database blip: the write is fenced,
so the same write is retried with the same token until the lease would expire. Only then (or
when the database refuses the token) is the result dropped and the job left to be rescued.

A batch the database refuses (an app's trigger raising for one plan, a constraint) is written
again row by row: the rows that can be saved are saved, and each refused one goes to
``on_refused`` (the lifecycle fails that job with the database's message). When the refusal is
not the rows' but every completion's (``check_completions`` is refused too, or every row of
several batches in a row was), the batch is kept and retried with backoff while ``Refusals``
holds the claiming back. A hold resting on the streak alone ends after ``ROWS_HOLD``: the
held rows are written row by row once more, and those still refused fail like any refused row
(see ``refusals`` for why, and for the one-job-at-a-time claiming that follows).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from mealplan_cli.core.queue import Completion, Queue
from mealplan_cli.core.worker.claims import Claim, ClaimState
from mealplan_cli.core.worker.outage import Outage, retrying
from mealplan_cli.core.worker.refusals import Refusals, describe
from mealplan_cli.ops.errors import DatabaseError, DatabaseUnavailableError, SchemaMissingError

log = logging.getLogger("mealworker.worker")

COMPLETION_BATCH = 500

Batch = list[tuple[Claim, dict[str, Any] | None]]


class Completer:
    """Collects results and writes them; ``on_written(claim, accepted, why_not)`` for each, or
    ``on_refused(claim, error)`` for a job whose own row the database refused."""

    def __init__(
        self,
        queue: Queue,
        outage: Outage,
        on_written: Callable[[Claim, bool, str | None], None],
        on_idle: Callable[[], None] = lambda: None,
        *,
        refusals: Refusals,
        on_refused: Callable[[Claim, DatabaseError], Awaitable[None]],
    ) -> None:
        self.queue = queue
        self.outage = outage
        self.on_written = on_written
        self.on_idle = on_idle
        """Called when everything added so far is written (``--until-empty`` then checks)."""
        self.refusals = refusals
        self.on_refused = on_refused
        self.closing = False
        """The worker is stopping: a refused batch is tried once more, not kept."""
        self._pending: Batch = []
        self._in_flight = 0
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, claim: Claim, result: dict[str, Any] | None) -> None:
        claim.state = ClaimState.COMPLETING
        self._pending.append((claim, result))
        self._idle.clear()
        self._ready.set()

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(0)  # let jobs finishing in the same tick join the batch
            await self.flush()

    async def flush(self) -> None:
        self._ready.clear()
        while self._pending:
            batch = self._pending[:COMPLETION_BATCH]
            del self._pending[:COMPLETION_BATCH]
            self._in_flight += len(batch)
            try:
                await self._write(batch)
            finally:
                self._in_flight -= len(batch)
        if not self._pending and not self._in_flight:
            self._idle.set()
            self.on_idle()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def _write(self, batch: Batch) -> None:
        while batch:
            claims = [claim for claim, _ in batch]
            deadline = min(claim.lease_until for claim in claims)

            def give_up(claims: list[Claim] = claims, deadline: float = deadline) -> bool:
                lost = all(claim.state is ClaimState.LOST for claim in claims)
                return lost or time.monotonic() >= deadline

            try:
                written = await self._complete(batch, give_up)
            except SchemaMissingError:
                raise  # the worker cannot go on without its functions: said loudly
            except DatabaseError as error:
                if give_up():  # the leases ran out meanwhile: another worker will redo them
                    written = set()
                elif self.closing:  # shutting down: no more tries; the leases will run out
                    for claim in claims:
                        self.on_written(claim, False, f"the database refused it: {describe(error)}")
                    return
                else:
                    self.refusals.sorting = True  # claims one job at a time meanwhile
                    try:
                        batch = await self._one_by_one(batch, error)
                    finally:
                        self.refusals.sorting = False
                    if batch:
                        await asyncio.sleep(self.refusals.next_retry())
                    continue
            for claim in claims:
                self.on_written(claim, claim.job.id in written, None)
            return

    async def _complete(self, batch: Batch, give_up: Callable[[], bool]) -> set[int]:
        completions = [Completion(claim.job, result) for claim, result in batch]
        try:
            written = await retrying(lambda: self.queue.complete(completions), self.outage, give_up)
        except DatabaseUnavailableError:
            return set()  # the leases ran out meanwhile: another worker will redo them
        self.refusals.accepted()
        return written

    async def _one_by_one(self, batch: Batch, error: DatabaseError) -> Batch:
        """The batch was refused: save what can be saved, one row at a time, and hand each
        refused job to ``on_refused``. Returns what is kept to be tried again: nothing, or the
        rows the database refuses for reasons of its own (a refusal of every completion)."""
        releasing = self.refusals.hold_over()
        if self.refusals.systemic and not releasing:
            self.refusals.refused("complete jobs", error, rows_only=True)  # reminded, backoff
            return batch
        if await self._every_completion_refused():
            return batch
        if len(batch) > 1:
            log.warning(
                "a completion of %d jobs was refused (%s); saving them one by one",
                len(batch),
                describe(error),
            )
        refused: Batch = []
        errors: list[DatabaseError] = []
        saved = 0
        for claim, result in batch:
            try:
                written = await self._complete([(claim, result)], partial(_gone, claim))
            except SchemaMissingError:
                raise
            except DatabaseError as row_error:
                refused.append((claim, result))
                errors.append(row_error)
                continue
            saved += 1
            self.on_written(claim, claim.job.id in written, None)
        if not releasing and not saved and refused and self.refusals.rows_refused(len(refused)):
            self.refusals.refused("complete jobs", errors[0], rows_only=True)
            return refused
        for (claim, _), refusal in zip(refused, errors, strict=True):
            await self.on_refused(claim, refusal)
        if releasing:
            self.refusals.release(len(refused), errors[0] if errors else error)
        return []

    async def _every_completion_refused(self) -> bool:
        """Whether a completion of no job is refused too: then no row is to blame."""
        try:
            await self.queue.check_completions()
        except DatabaseUnavailableError:
            return False
        except DatabaseError as check_error:
            self.refusals.refused("complete jobs", check_error)
            return True
        return False


def _gone(claim: Claim) -> bool:
    return claim.state is ClaimState.LOST or time.monotonic() >= claim.lease_until
