"""What the queue benchmarks share: a fresh migrated database, a worker, a clock."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mealplan_cli.config import Settings
from mealplan_cli.db.postgres import PostgresDatabase
from mealplan_cli.generation.services import GenerationServices, generation_services
from mealplan_cli.handlers import HandlerRegistry, default_handlers
from mealplan_cli.queue import Queue
from mealplan_cli.worker import Worker, WorkerConfig, WorkerReport
from tests import pg


@contextmanager
def fresh_database() -> Iterator[str]:
    """A migrated database on ``MEALWORKER_TEST_DATABASE_URL``'s server, else an embedded one."""
    server, handle = pg.start_server()
    template = pg.create_template(server)
    name = pg.clone(server, template)
    try:
        yield pg.with_database(server, name)
    finally:
        pg.drop(server, name)
        pg.drop(server, template)
        del handle


def server_description() -> str:
    return "configured server" if os.environ.get(pg.ENV_VAR) else "embedded server"


async def run_worker(
    url: str,
    handlers: HandlerRegistry | None = None,
    *,
    stop_after: asyncio.Event | None = None,
    **config: Any,
) -> WorkerReport:
    """A worker in this process; drains the queue unless ``stop_after`` is given."""
    db = await PostgresDatabase(url, min_size=4, max_size=4).open()
    try:
        async with generation_services(Settings(planner="catalog")) as services:
            worker = _worker(db, handlers, services, stop_after is None, config)
            if stop_after is None:
                return await worker.run()
            running = asyncio.create_task(worker.run())
            await stop_after.wait()
            worker.stop()
            return await running
    finally:
        await db.close()


def _worker(
    db: PostgresDatabase,
    handlers: HandlerRegistry | None,
    services: GenerationServices,
    until_empty: bool,
    config: dict[str, Any],
) -> Worker:
    values: dict[str, Any] = {"until_empty": until_empty, "poll_interval": 1.0, **config}
    return Worker(Queue(db), handlers or default_handlers(), services, WorkerConfig(**values))
