"""The composition root: settings in; database, queue, handlers, resources and worker out.

The CLI, the demo, the benchmarks, the tests and a program embedding mealworker all build a
worker the same way::

    async with open_runtime(settings, handlers=my_handlers, resources=my_things) as rt:
        report = await rt.run_worker(until_empty=True)

The heavy parts load only when needed: psycopg or supabase-py with the transport the settings
select, and the meal-plan generation library (pydantic models, OpenAI's SDK) only when the
handlers include ``generate_meal_plan``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mealplan_cli.core.db.base import Database
from mealplan_cli.core.handlers import HandlerRegistry, JobContext, ping_job
from mealplan_cli.core.queue import PING_JOB, ClaimedJob, Queue
from mealplan_cli.core.signals import STOP, StopSignals
from mealplan_cli.core.worker import Worker, WorkerConfig, WorkerReport
from mealplan_cli.core.worker.outage import Outage
from mealplan_cli.ops.errors import ConfigurationError, DatabaseUnavailableError
from mealplan_cli.ops.metrics import Health, WorkerMetrics
from mealplan_cli.ops.retry_policies import DATABASE_AT_START
from mealplan_cli.settings.config import Settings

MEAL_PLAN_JOB = "generate_meal_plan"  # the same name as mealplans.MEAL_PLAN_JOB, kept light


async def generate_meal_plan(job: ClaimedJob, context: JobContext) -> dict[str, Any]:
    """The meal-plan handler, loaded with the generation library on its first job: a worker
    that never sees one starts faster and stays smaller."""
    from mealplan_cli.mealplans.job import generate_meal_plan_job

    return await generate_meal_plan_job(job, context)


def builtin_handlers(
    job_types: list[str] | None = None, extra: Sequence[HandlerRegistry] = ()
) -> HandlerRegistry:
    """mealworker's own job types (``ping``, and ``generate_meal_plan`` unless left out), and
    those of ``extra`` registries (``work --handlers``); an unknown name in ``job_types`` is a
    configuration error naming the known ones."""
    handlers = HandlerRegistry()
    handlers.register(PING_JOB, ping_job)
    if not job_types or MEAL_PLAN_JOB in job_types:
        handlers.register(MEAL_PLAN_JOB, generate_meal_plan)
    for registry in extra:
        for job_type, handler in registry.handlers.items():
            handlers.register(job_type, handler)
    if not job_types:
        return handlers
    known = sorted({*handlers, MEAL_PLAN_JOB})
    unknown = sorted(set(job_types) - set(known))
    if unknown:
        raise ConfigurationError(
            f"no handler for job type {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return handlers.only(job_types)


def load_handlers(spec: str) -> HandlerRegistry:
    """The handlers ``MODULE:ATTRIBUTE`` names (``work --handlers``): a ``HandlerRegistry``, or
    a function returning one. The current folder is importable, as with ``python -m``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"--handlers {spec!r}: expected MODULE:ATTRIBUTE, e.g. myapp.jobs:handlers"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(
            f"--handlers {spec!r}: cannot import {module_name}: {error}"
        ) from None
    found = getattr(module, attribute, None)
    if callable(found) and not isinstance(found, HandlerRegistry):
        found = found()
    if not isinstance(found, HandlerRegistry):
        raise ConfigurationError(
            f"--handlers {spec!r}: {module_name}.{attribute} must be a HandlerRegistry or a "
            "function returning one"
        )
    return found


@dataclass
class Runtime:
    """Everything a worker command runs with, opened together and closed together."""

    settings: Settings
    db: Database
    queue: Queue
    handlers: HandlerRegistry
    resources: Any
    """What handlers get as ``context.resources`` (``GenerationServices`` for meal plans)."""
    description: str
    """The resources in words, for the start-up log line."""

    def worker_config(self, **overrides: Any) -> WorkerConfig:
        return WorkerConfig.from_settings(self.settings, **overrides)

    def worker(self, *, metrics: WorkerMetrics | None = None, **overrides: Any) -> Worker:
        """A worker over this runtime; ``overrides`` are ``WorkerConfig`` fields."""
        worker = Worker(
            self.queue,
            self.handlers,
            self.worker_config(**overrides),
            resources=self.resources,
            metrics=metrics,
        )
        images = getattr(self.resources, "images", None)
        if images is not None:
            stats = images.stats
            worker.metrics.photo_counts = lambda: (stats.searches, stats.cache_hits)
        figures = getattr(getattr(self.resources, "budget", None), "figures", None)
        if callable(figures):  # the fleet's OpenAI budget (mealplans.budget.DatabaseBudget)
            worker.metrics.budget = figures
        return worker

    async def run_worker(
        self, *, signals: StopSignals | None = STOP, **overrides: Any
    ) -> WorkerReport:
        """Run a worker until it is stopped (or, with ``until_empty=True``, the queue is
        drained); with ``signals``, SIGTERM/SIGINT stop it gracefully, a second at once."""
        worker = self.worker(**overrides)
        if signals is None:
            return await worker.run()
        with signals.stopping(worker.stop):
            return await worker.run()


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    handlers: HandlerRegistry | None = None,
    job_types: list[str] | None = None,
    resources: Any = None,
    pool_size: int | None = None,
    keep_open: bool = False,
    wait_for_database: bool = False,
) -> AsyncIterator[Runtime]:
    """Open the database the settings select and what the handlers need; close all on exit.

    ``handlers`` default to the built-in ones (restricted to ``job_types``). ``resources`` is
    passed to every handler; when it is None and meal plans are handled, the generation
    services are opened from the settings. With ``wait_for_database`` (a worker), a database
    that cannot be reached yet is retried with backoff, and said so, until it answers.
    """
    from tenacity import AsyncRetrying, retry_if_exception_type, retry_never

    from mealplan_cli.core.db.connect import open_database

    handlers = handlers if handlers is not None else builtin_handlers(job_types)
    size = pool_size or WorkerConfig.from_settings(settings).pool_size
    async with AsyncExitStack() as stack:
        outage = Outage(WorkerMetrics(), Health(stale_after=60))

        def unreachable(state: Any) -> None:
            outage.failed(state.outcome.exception())

        waiting = retry_if_exception_type(DatabaseUnavailableError)
        async for attempt in AsyncRetrying(
            retry=waiting if wait_for_database else retry_never,
            wait=DATABASE_AT_START,
            before_sleep=unreachable,
            reraise=True,
        ):
            with attempt:
                db = await stack.enter_async_context(
                    open_database(settings, pool_size=size, keep_open=keep_open)
                )
        outage.recovered()
        description = "no meal-plan services"
        if resources is None and MEAL_PLAN_JOB in handlers:
            from mealplan_cli.mealplans.budget import DatabaseBudget
            from mealplan_cli.mealplans.generation.services import generation_services
            from mealplan_cli.mealplans.plans import DatabaseImageCache

            resources = await stack.enter_async_context(
                generation_services(
                    settings,
                    image_cache=DatabaseImageCache(db),
                    budget=DatabaseBudget.from_settings(db, settings),
                )
            )
            description = resources.description
        yield Runtime(settings, db, Queue(db), handlers, resources, description)
