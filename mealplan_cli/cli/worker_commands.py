"""``mealworker work`` and ``mealworker run-job``: the worker loop, and one job by hand."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import typer

from mealplan_cli import __version__
from mealplan_cli.cli.app import app, load_settings, run_async, run_checked, stderr, stdout
from mealplan_cli.cli.render import progress_display
from mealplan_cli.cli.signals import graceful_stop
from mealplan_cli.config import PlannerChoice, Settings
from mealplan_cli.db.base import Database
from mealplan_cli.db.connect import open_database, worker_database_notice
from mealplan_cli.errors import MealworkerError
from mealplan_cli.generation import generation_services
from mealplan_cli.generation.services import GenerationServices
from mealplan_cli.handlers import HandlerRegistry, default_handlers
from mealplan_cli.logs import setup_logging
from mealplan_cli.metrics import serve_metrics
from mealplan_cli.queue import DatabaseImageCache, Queue
from mealplan_cli.worker import SingleRun, Worker, WorkerConfig, WorkerReport, run_single

log = logging.getLogger("mealworker.worker")


@dataclass
class Runtime:
    """Everything a worker command runs with, opened together and closed together."""

    db: Database
    queue: Queue
    services: GenerationServices


@asynccontextmanager
async def runtime(
    settings: Settings, *, pool_size: int = 4, keep_open: bool = False
) -> AsyncIterator[Runtime]:
    async with open_database(settings, pool_size=pool_size, keep_open=keep_open) as db:
        cache = DatabaseImageCache(db)
        async with generation_services(settings, image_cache=cache) as services:
            yield Runtime(db, Queue(db), services)


def handlers_for(job_types: list[str] | None) -> HandlerRegistry:
    handlers = default_handlers()
    if not job_types:
        return handlers
    unknown = sorted(set(job_types) - set(handlers))
    if unknown:
        raise MealworkerError(
            f"no handler for job type {', '.join(unknown)}; known: {', '.join(handlers)}"
        )
    return handlers.only(job_types)


@app.command()
def work(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option(envvar="MAX_CONCURRENT_JOBS", help="Jobs at once.")
    ] = None,
    poll_interval: Annotated[
        int | None,
        typer.Option(envvar="POLL_INTERVAL_MS", help="Milliseconds between polls (jittered)."),
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(envvar="WORKER_ID", help="Default: host name and pid.")
    ] = None,
    until_empty: Annotated[
        bool, typer.Option("--until-empty", help="Drain the queue, then exit.")
    ] = False,
    job_type: Annotated[
        list[str] | None, typer.Option("--job-type", help="Only these job types (repeatable).")
    ] = None,
    planner: Annotated[PlannerChoice | None, typer.Option(envvar="PLANNER")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(envvar="METRICS_PORT", help="Serve /metrics and /healthz on this port."),
    ] = None,
) -> None:
    """Run the worker: claim jobs and process them until SIGTERM or SIGINT."""
    settings = load_settings(
        ctx,
        max_concurrent_jobs=concurrency,
        poll_interval_ms=poll_interval,
        worker_id=worker_id,
        planner=planner,
        metrics_port=metrics_port,
    )
    config = WorkerConfig(
        worker_id=settings.worker_id or f"{socket.gethostname()}-{os.getpid()}",
        concurrency=settings.max_concurrent_jobs,
        poll_interval=settings.poll_interval_ms / 1000,
        lease_seconds=settings.lease_seconds,
        job_timeout=settings.job_timeout_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
        sweep_interval=settings.stale_sweep_seconds,
        until_empty=until_empty,
    )
    setup_logging(settings, worker_id=config.worker_id)
    if notice := run_checked(ctx, lambda: worker_database_notice(settings)):
        log.warning(notice)
    report = run_async(ctx, _work(settings, config, job_type))
    stderr.print(
        f"worker stopped: {report.completed} completed, {report.failed} failed, "
        f"{report.retried} retried, {report.released} released, {report.lost} lost",
        highlight=False,
    )


async def _work(
    settings: Settings, config: WorkerConfig, job_types: list[str] | None
) -> WorkerReport:
    handlers = handlers_for(job_types)
    pool_size = min(max(4, config.concurrency // 50), 10)
    async with runtime(settings, pool_size=pool_size, keep_open=True) as rt:
        worker = Worker(rt.queue, handlers, rt.services, config)
        log.info(
            "mealworker %s: transport %s, worker %s, concurrency %d, jobs %s, %s",
            __version__,
            rt.db.transport,
            config.worker_id,
            config.concurrency,
            ", ".join(handlers),
            rt.services.description,
        )
        server = None
        if settings.metrics_port is not None:
            server = await serve_metrics(worker.metrics, worker.health, settings.metrics_port)
            log.info("metrics on :%d/metrics, health on :%d/healthz", *[settings.metrics_port] * 2)
        try:
            with graceful_stop(worker.stop):
                return await worker.run()
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()


@app.command("run-job")
def run_job(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The background_jobs id.")],
    force: Annotated[
        bool, typer.Option("--force", help="Also reprocess a failed, completed or cancelled job.")
    ] = False,
    planner: Annotated[PlannerChoice | None, typer.Option(envvar="PLANNER")] = None,
) -> None:
    """Process one job in the foreground. Exit 0 done, 1 failed, 2 no such job."""
    settings = load_settings(ctx, planner=planner)
    setup_logging(settings, worker_id=f"run-job-{socket.gethostname()}-{os.getpid()}")
    outcome = run_async(ctx, _run_job(settings, job_id, force))
    if outcome is None:
        stderr.print(f"[bold red]error:[/] no job {job_id}")
        raise typer.Exit(2)
    if not outcome.completed:
        where = f" (now {outcome.status})" if outcome.status else ""
        stderr.print(f"[bold red]job {job_id} failed{where}:[/] {outcome.error}", highlight=False)
        raise typer.Exit(1)
    stdout.print(f"job {job_id} completed")


async def _run_job(settings: Settings, job_id: int, force: bool) -> SingleRun | None:
    worker_id = f"run-job-{socket.gethostname()}-{os.getpid()}"
    async with runtime(settings) as rt:
        info = await rt.queue.get_job(job_id)
        if info is None:
            return None
        job = await rt.queue.claim_job(job_id, worker_id, settings.lease_seconds, force=force)
        if job is None:
            if info.status == "processing":
                reason = f"it is being processed by {info.locked_by}"
            else:
                reason = f"it is {info.status}; use --force to reprocess it"
            raise MealworkerError(f"cannot run job {job_id}: {reason}")
        stderr.print(
            f"[dim]job {job.id} ({job.job_type}), attempt {job.attempts} of "
            f"{job.max_attempts}; {rt.services.description}[/]",
            highlight=False,
        )
        with progress_display(stderr) as on_progress:
            return await run_single(
                rt.queue,
                default_handlers(),
                rt.services,
                job,
                worker_id=worker_id,
                lease_seconds=settings.lease_seconds,
                time_limit=settings.job_timeout_seconds,
                on_progress=on_progress,
            )
