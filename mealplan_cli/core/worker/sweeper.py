"""The stale sweep: puts back jobs whose worker died (lease expired); no cron needed."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from mealplan_cli.core.queue import Queue
from mealplan_cli.core.worker.outage import Outage
from mealplan_cli.core.worker.refusals import describe
from mealplan_cli.ops.errors import DatabaseError, DatabaseUnavailableError, SchemaMissingError

log = logging.getLogger("mealworker.worker")


class Sweeper:
    def __init__(
        self, queue: Queue, interval: float, outage: Outage, on_requeued: Callable[[], None]
    ) -> None:
        self.queue = queue
        self.interval = interval
        self.outage = outage
        self.on_requeued = on_requeued

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))
            await self.sweep()

    async def sweep(self) -> int:
        try:
            requeued = await self.queue.requeue_stale()
        except DatabaseUnavailableError as error:
            self.outage.failed(error)
            return 0
        except SchemaMissingError:
            raise
        except DatabaseError as error:  # one stale job's plan refused, say: the next sweep
            log.error("could not requeue jobs whose lease expired: %s", describe(error))
            return 0
        self.outage.recovered()
        if requeued:
            count = len(requeued)
            log.warning("requeued %d job%s whose lease expired", count, "" if count == 1 else "s")
            self.on_requeued()
        return len(requeued)
