"""Lease keeping: every lease/3, extend every held lease and learn which were lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from mealplan_cli.core.queue import Queue
from mealplan_cli.core.worker.claims import Claim, Claims, ClaimState
from mealplan_cli.core.worker.config import WorkerConfig, rss_bytes
from mealplan_cli.core.worker.outage import Outage
from mealplan_cli.core.worker.refusals import Refusals, may_pass
from mealplan_cli.ops.errors import DatabaseError, DatabaseUnavailableError, SchemaMissingError


class LeaseKeeper:
    """Extends the leases of ``claims``; tells ``on_lost(claim, reason)`` about lost ones
    (reason ``lost``: another worker has it or it expired; ``cancelled``: an operator)."""

    def __init__(
        self,
        queue: Queue,
        claims: Claims,
        config: WorkerConfig,
        outage: Outage,
        on_lost: Callable[[Claim, str], None],
        status: Callable[[], str] = lambda: "running",
        *,
        refusals: Refusals,
    ) -> None:
        self.queue = queue
        self.claims = claims
        self.config = config
        self.outage = outage
        self.on_lost = on_lost
        self.status = status
        self.refusals = refusals

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease_seconds / 3)
            await self.beat()

    async def beat(self) -> None:
        held = [claim for claim in self.claims if claim.state is not ClaimState.LOST]
        sent_at = time.monotonic()
        try:
            lost = await self.queue.heartbeat(
                self.config.worker_id,
                [claim.job for claim in held],
                self.config.lease_seconds,
                rss_bytes=rss_bytes(),
                status=self.status(),
            )
        except DatabaseUnavailableError as error:
            self.outage.failed(error)
            return
        except SchemaMissingError:
            raise
        except DatabaseError as error:  # the leases run out; the worker goes on saying why
            if not may_pass(error):  # a deadlock is tried again at the next beat
                self.refusals.refused("extend the leases", error)
            return
        self.outage.recovered()
        self.refusals.accepted("extend the leases")
        reasons = {lease.job_id: lease.reason for lease in lost}
        for claim in held:
            reason = reasons.get(claim.job.id)
            if reason is None:
                claim.extended(sent_at)
            elif claim.outcome is None:  # not settled while the heartbeat was in flight
                self.on_lost(claim, reason)
