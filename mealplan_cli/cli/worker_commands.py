"""``mealworker work`` and ``mealworker run-job``: the worker loop, and one job by hand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mealplan_cli import __version__
from mealplan_cli.cli.app import (
    PLANNER_HELP,
    Planner,
    app,
    error_line,
    fail,
    load_settings,
    options,
    run_async,
    stderr,
    stdout,
)
from mealplan_cli.cli.job_refs import JobRef, missing, parse_ref, resolve
from mealplan_cli.core.signals import STOP
from mealplan_cli.ops.errors import MealworkerError

if TYPE_CHECKING:
    from mealplan_cli.core.worker import WorkerReport
    from mealplan_cli.core.worker.claims import Claim
    from mealplan_cli.settings.config import Settings

log = logging.getLogger("mealworker.worker")

T = TypeVar("T")


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
    handlers: Annotated[
        list[str] | None,
        typer.Option(
            "--handlers",
            metavar="MODULE:ATTRIBUTE",
            help="Also run the job types of this HandlerRegistry, or of the function returning"
            " one, e.g. examples.word_count:handlers (repeatable).",
        ),
    ] = None,
    planner: Annotated[Planner | None, typer.Option(envvar="PLANNER", help=PLANNER_HELP)] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(envvar="METRICS_PORT", help="Serve /metrics and /healthz on this port."),
    ] = None,
) -> None:
    """Run the worker: claim jobs and process them until SIGTERM or SIGINT."""
    STOP.install()  # a signal from here on exits 0 (gracefully once the worker runs)
    settings = load_settings(
        ctx,
        max_concurrent_jobs=concurrency,
        poll_interval_ms=poll_interval,
        worker_id=worker_id,
        planner=planner,
        metrics_port=metrics_port,
    )
    from mealplan_cli.core.worker import WorkerConfig
    from mealplan_cli.ops.logs import setup_logging

    config = WorkerConfig.from_settings(settings, until_empty=until_empty)
    setup_logging(settings, worker_id=config.worker_id)
    # From here on, what the worker has to say (a failure to start included) is a log record:
    # in LOG_FORMAT, in combined.log, and in error.log when it failed.
    from mealplan_cli.core.db.connect import worker_database_notice

    if notice := _logged(ctx, lambda: worker_database_notice(settings)):
        log.warning(notice)
    report = _logged(
        ctx, lambda: asyncio.run(_work(settings, config.until_empty, job_type, handlers or []))
    )
    log.info(
        "worker stopped: %d completed, %d failed, %d retried, %d deferred, %d released, %d lost",
        report.completed,
        report.failed,
        report.retried,
        report.deferred,
        report.released,
        report.lost,
    )


def _logged(ctx: typer.Context, action: Callable[[], T]) -> T:
    """``action()``; a failure is logged (one record, its traceback folded in with ``--debug``
    or when it is not ours) and exits 1, like ``run_checked`` but through the log."""
    try:
        return action()
    except MealworkerError as error:
        log.critical("worker stopped: %s", error, exc_info=error if options(ctx).debug else None)
    except (KeyboardInterrupt, typer.Exit, typer.Abort):
        raise
    except Exception as error:  # a bug: its traceback, on one line, in the files too
        log.critical("worker stopped by an unexpected error: %r", error, exc_info=error)
    raise typer.Exit(1)


async def _work(
    settings: Settings, until_empty: bool, job_types: list[str] | None, specs: list[str]
) -> WorkerReport:
    from mealplan_cli.ops.metrics import serve_metrics
    from mealplan_cli.runtime import builtin_handlers, load_handlers, open_runtime

    handlers = builtin_handlers(job_types, [load_handlers(spec) for spec in specs])
    async with open_runtime(
        settings, handlers=handlers, keep_open=True, wait_for_database=True
    ) as rt:
        worker = rt.worker(until_empty=until_empty)
        config = worker.config
        log.info(
            "mealworker %s: transport %s, worker %s, concurrency %d, jobs %s, %s",
            __version__,
            rt.db.transport,
            config.worker_id,
            config.concurrency,
            ", ".join(handlers),
            rt.description,
        )
        server = None
        if settings.metrics_port is not None:
            server = await serve_metrics(worker.metrics, worker.health, settings.metrics_port)
            log.info("metrics on :%d/metrics, health on :%d/healthz", *[settings.metrics_port] * 2)
        try:
            with STOP.stopping(worker.stop):
                log.info("ready to claim %s", ", ".join(handlers))
                return await worker.run()
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()


@app.command("run-job")
def run_job(
    ctx: typer.Context,
    job: Annotated[
        str,
        typer.Argument(help="The background_jobs id, or the meal plan's id (a uuid)."),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Also reprocess a failed, completed or cancelled job.")
    ] = False,
    planner: Annotated[Planner | None, typer.Option(envvar="PLANNER", help=PLANNER_HELP)] = None,
) -> None:
    """Process one job in the foreground. Exit 0 done, 1 failed, deferred or no such job."""
    parse_ref(job)  # a malformed id is refused before any connection
    STOP.install()
    from mealplan_cli.core.worker import default_worker_id
    from mealplan_cli.ops.logs import setup_logging

    settings = load_settings(ctx, planner=planner)
    worker_id = default_worker_id("run-job")
    setup_logging(settings, worker_id=worker_id)
    job_id = _job_id(ctx, settings, job)
    claim = run_async(ctx, _run_job(settings, job_id, force, worker_id))
    if claim is None:
        fail(f"no job {job_id}")
    if claim.outcome == "released":
        fail(f"job {job_id} interrupted: released back to the queue")
    if claim.outcome == "deferred":
        fail(f"job {job_id} not done: it waits (now pending, no attempt spent): {claim.error}")
    if claim.outcome != "completed":
        written = claim.outcome in ("pending", "failed", "cancelled")
        where = f" (now {claim.outcome})" if written else ""
        error_line(f"job {job_id} failed{where}: {claim.error}")
        raise typer.Exit(1)
    stdout.print(f"job {job_id} completed")


def _job_id(ctx: typer.Context, settings: Settings, job: str) -> int:
    """``JOB`` as a job id: a number is one; a meal plan's uuid is looked up."""
    ref = parse_ref(job)
    if ref.job_id is not None:
        return ref.job_id
    ids, _ = run_async(ctx, _resolve(settings, ref))
    if not ids:
        fail(missing(ref))
    return int(ids[0])


async def _resolve(settings: Settings, ref: JobRef) -> tuple[list[int], list[JobRef]]:
    from mealplan_cli.core.db.connect import open_database

    async with open_database(settings) as db:
        return await resolve(db, [ref])


async def _run_job(settings: Settings, job_id: int, force: bool, worker_id: str) -> Claim | None:
    from mealplan_cli.cli.render import progress_display
    from mealplan_cli.runtime import open_runtime

    async with open_runtime(settings) as rt:
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
            f"{job.max_attempts}; {rt.description}[/]",
            highlight=False,
        )
        worker = rt.worker(worker_id=worker_id)
        with progress_display(stderr) as on_progress, STOP.stopping(worker.stop):
            return await worker.run_claimed(job, on_progress)
