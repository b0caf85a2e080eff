"""One timer per batch of jobs started together: it stops only the handlers still running
under it, and it is gone once the last of them ends."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

from mealplan_cli.core.queue import ClaimedJob
from mealplan_cli.core.worker.claims import Claim
from mealplan_cli.core.worker.time_limits import BatchTimeLimit


def claim_of(job_id: int) -> Claim:
    job = ClaimedJob(job_id, "ping", {}, 1, 3, 0, uuid4(), None, None)
    now = time.monotonic()
    return Claim(job, 60.0, now, now + 60.0)


def test_the_limit_stops_only_the_handlers_still_under_it() -> None:
    stopped: list[int] = []

    async def main() -> None:
        fired = asyncio.Event()

        def time_is_up(claim: Claim) -> None:
            stopped.append(claim.job.id)
            fired.set()

        claims = [claim_of(n) for n in (1, 2, 3)]
        limit = BatchTimeLimit(claims, 0.05, time_is_up)
        assert all(claim.time_limit is limit for claim in claims)
        limit.ended(claims[1])
        assert claims[1].time_limit is None
        await fired.wait()
        assert not limit.armed  # fired: nothing waits in the event loop any more

    asyncio.run(main())
    assert stopped == [1, 3]


def test_the_timer_is_cancelled_when_the_last_handler_ends() -> None:
    """Else every job's claim would wait in the event loop for ``job_timeout`` (minutes)."""

    async def main() -> None:
        claims = [claim_of(n) for n in (1, 2)]
        limit = BatchTimeLimit(claims, 600.0, lambda claim: None)
        limit.ended(claims[0])
        assert limit.armed
        limit.ended(claims[1])
        assert not limit.armed

    asyncio.run(main())
