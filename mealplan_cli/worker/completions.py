"""Completion batching: finished jobs written many per call, each fenced by its lease token.

A result that took a minute of OpenAI time must survive a database blip: the write is fenced,
so the same write is retried with the same token until the lease would expire. Only then (or
when the database refuses the token) is the result dropped and the job left to be rescued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from mealplan_cli.errors import DatabaseUnavailableError
from mealplan_cli.queue import Completion, Queue
from mealplan_cli.worker.claims import Claim, ClaimState
from mealplan_cli.worker.outage import Outage, retrying

COMPLETION_BATCH = 500


class Completer:
    """Collects results and writes them; ``on_written(claim, accepted)`` for each."""

    def __init__(
        self,
        queue: Queue,
        outage: Outage,
        on_written: Callable[[Claim, bool], None],
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.outage = outage
        self.on_written = on_written
        self.on_idle = on_idle
        """Called when everything added so far is written (``--until-empty`` then checks)."""
        self._pending: list[tuple[Claim, dict[str, Any] | None]] = []
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

    async def _write(self, batch: list[tuple[Claim, dict[str, Any] | None]]) -> None:
        claims = [claim for claim, _ in batch]
        deadline = min(claim.lease_until for claim in claims)

        def give_up() -> bool:
            lost = all(claim.state is ClaimState.LOST for claim in claims)
            return lost or time.monotonic() >= deadline

        completions = [Completion(claim.job, result) for claim, result in batch]
        try:
            written = await retrying(lambda: self.queue.complete(completions), self.outage, give_up)
        except DatabaseUnavailableError:
            written = set()  # the leases ran out meanwhile: another worker will redo them
        for claim in claims:
            self.on_written(claim, claim.job.id in written)
