"""What the queue benchmarks share: a fresh migrated database, a worker, a clock."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mealplan_cli.core.db.migrations import Migration
from mealplan_cli.core.worker import WorkerReport
from mealplan_cli.handlers import HandlerRegistry
from mealplan_cli.mealplans import job  # noqa: F401  (loaded up front, not in the timing)
from mealplan_cli.ops.redact import SecretStr
from mealplan_cli.runtime import open_runtime
from mealplan_cli.settings.config import PlannerChoice, Settings
from tests.helpers import pg


@contextmanager
def fresh_database(migrations: list[Migration] | None = None) -> Iterator[str]:
    """A migrated database on ``MEALWORKER_TEST_DATABASE_URL``'s server, else an embedded one
    (``migrations``: those instead of the bundled ones)."""
    server, handle = pg.start_server()
    template = pg.create_template(server, migrations)
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
    """A worker in this process, built by the runtime as ``work`` builds it; drains the queue
    unless ``stop_after`` is given."""
    settings = Settings(database_url=SecretStr(url), planner=PlannerChoice.catalog)
    values: dict[str, Any] = {"until_empty": stop_after is None, "poll_interval": 1.0, **config}
    async with open_runtime(settings, handlers=handlers, pool_size=4, keep_open=True) as rt:
        worker = rt.worker(**values)
        if stop_after is None:
            return await worker.run()
        running = asyncio.create_task(worker.run())
        await stop_after.wait()
        worker.stop()
        return await running
