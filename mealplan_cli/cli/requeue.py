"""``mealworker requeue`` and ``mealworker cancel``: put jobs back, or stop them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from mealplan_cli.cli.app import app, error_line, load_settings, run_async, stdout
from mealplan_cli.cli.durations import ago
from mealplan_cli.cli.job_refs import JobRef, missing, parse_refs, resolve
from mealplan_cli.cli.wording import plural
from mealplan_cli.core.db.base import Row
from mealplan_cli.core.queue import Cancellation, Queue

if TYPE_CHECKING:
    from mealplan_cli.settings.config import Settings

JOBS_HELP = "Job ids, or meal plan ids (uuids)."

BY_ID = ("failed", "cancelled", "pending")
"""What ``requeue ID`` takes back without ``--force`` (a pending job is made runnable now)."""


@app.command()
def requeue(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str] | None, typer.Argument(help=f"Jobs to requeue: {JOBS_HELP}", show_default=False)
    ] = None,
    stale: Annotated[
        bool, typer.Option("--stale", help="Jobs whose worker died (lease expired). For cron.")
    ] = False,
    failed: Annotated[
        bool, typer.Option("--failed", help="Failed jobs (with the filters).")
    ] = False,
    waiting: Annotated[
        bool,
        typer.Option(
            "--waiting",
            help="Jobs waiting with a reason until a later time (a daily OpenAI cap reached): "
            "run them now (with the filters).",
        ),
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="Only jobs that changed within this long, e.g. 24h.")
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    error_contains: Annotated[
        str | None, typer.Option(help="Only jobs whose last error contains this text.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    reset_attempts: Annotated[
        bool, typer.Option("--reset-attempts", help="Give them their full attempts again.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be requeued; change nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Requeue completed jobs named by id too (their results start over)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Put jobs back in the queue: --stale (from cron), --failed or --waiting with filters,
    or by id. A meal plan job's meal plan goes back to pending with it. A completed job is
    requeued only with --force: its meal plan would be written again. Exit 1 when a job named
    by id was not requeued (unknown, completed without --force, or being processed)."""
    if sum((stale, failed, waiting, bool(job_ids))) != 1:
        raise typer.BadParameter("give exactly one of --stale, --failed, --waiting or job ids")
    if force and not job_ids:
        raise typer.BadParameter("--force applies to jobs named by id")
    refs = parse_refs(job_ids or [])
    changed_since = ago(since, "--since")  # a typo is refused before any connection
    settings = load_settings(ctx)
    if stale:
        moved = run_async(ctx, _stale(settings, limit=limit, dry_run=dry_run))
        if as_json:
            stdout.out(
                json.dumps([{"job_id": i, "status": s, "dry_run": dry_run} for i, s in moved])
            )
        elif moved:  # silent when nothing changed, so cron mails only news
            now = "would be" if dry_run else "now"
            for job_id, status in moved:
                stdout.print(f"job {job_id}: lease expired, {now} {status}", highlight=False)
        elif dry_run:
            stdout.print("would requeue no job: no lease has expired", highlight=False)
        return
    outcome = run_async(
        ctx,
        _requeue(
            settings,
            refs=refs,
            since=changed_since,
            job_type=job_type,
            error_contains=error_contains,
            limit=limit,
            reset_attempts=reset_attempts,
            dry_run=dry_run,
            force=force,
            waiting=waiting,
        ),
    )
    rows = outcome.rows
    if as_json:
        stdout.out(json.dumps(rows, default=str))
    elif rows or not outcome.problems:
        verb = "would requeue" if dry_run else "requeued"
        from rich.table import Table

        table = Table(
            "job", "type", "was", "last error", title=f"{verb} {plural(len(rows), 'job')}"
        )
        for row in rows:
            table.add_row(
                str(row["job_id"]),
                row["job_type"],
                row["previous_status"],
                row.get("last_error") or "",
            )
        stdout.print(table)
    for problem in outcome.problems:
        error_line(problem)
    if outcome.problems:
        raise typer.Exit(1)


@dataclass
class Requeued:
    rows: list[Row]
    problems: list[str] = field(default_factory=list)
    """Why a job named by id was not requeued, one line each."""


async def _stale(settings: Settings, *, limit: int, dry_run: bool) -> list[tuple[int, str]]:
    from mealplan_cli.core.db.connect import open_database

    async with open_database(settings) as db:
        return await Queue(db).requeue_stale(limit, dry_run=dry_run)


async def _requeue(
    settings: Settings,
    *,
    refs: list[JobRef],
    since: datetime | None,
    job_type: str | None,
    error_contains: str | None,
    limit: int,
    reset_attempts: bool,
    dry_run: bool,
    force: bool = False,
    waiting: bool = False,
) -> Requeued:
    from mealplan_cli.core.db.connect import open_database

    async with open_database(settings) as db:
        queue = Queue(db)
        job_ids, unknown = await resolve(db, refs)
        problems = [missing(ref) for ref in unknown]
        if refs and not job_ids:
            return Requeued([], problems)
        if job_ids:
            statuses: tuple[str, ...] = (*BY_ID, "completed") if force else BY_ID
        else:
            statuses = ("pending",) if waiting else ("failed",)
        rows = await queue.requeue_jobs(
            job_ids=job_ids or None,
            statuses=statuses,
            job_type=job_type,
            since=since,
            error_contains=error_contains,
            reset_attempts=reset_attempts,
            limit=limit,
            dry_run=dry_run,
            waiting=waiting,
        )
        done = {int(row["job_id"]) for row in rows}
        for job_id in job_ids:
            if job_id in done:
                continue
            info = await queue.get_job(job_id)
            if info is None:
                problems.append(f"no job {job_id}")
            elif info.status == "processing":
                problems.append(
                    f"job {job_id} was not requeued: it is being processed by {info.locked_by}"
                )
            elif info.status == "completed":
                problems.append(
                    f"job {job_id} was not requeued: it is completed, and requeueing it would "
                    "write its result (a meal plan) again; add --force to do that"
                )
            else:
                problems.append(f"job {job_id} was not requeued (it is {info.status})")
        return Requeued(rows, problems)


CANCEL_MESSAGES = {
    "cancelled": "cancelled",
    "cancel_requested": "cancel requested; its worker stops it at its next heartbeat",
    "already_requested": "cancel already requested; its worker stops it at its next heartbeat",
    "already_cancelled": "already cancelled",
}


@app.command()
def cancel(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(help=f"Jobs to cancel: {JOBS_HELP}")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cancel jobs: a pending one at once, a processing one when its worker next checks in.
    Exit 1 when a job could not be cancelled (completed, failed or unknown)."""
    refs = parse_refs(job_ids)
    settings = load_settings(ctx)
    outcome, wanted, unknown = run_async(ctx, _cancel(settings, refs))
    found = {item.job_id for item in outcome}
    absent = [job_id for job_id in wanted if job_id not in found]
    refused = [item for item in outcome if item.refused]
    if as_json:
        rows: list[dict[str, object]] = [
            {
                "job_id": item.job_id,
                "status": item.status,
                "previous_status": item.previous_status,
                "outcome": item.outcome,
            }
            for item in outcome
        ]
        rows += [{"job_id": job_id, "outcome": "not_found"} for job_id in absent]
        rows += [{"meal_plan_id": str(ref.meal_plan_id), "outcome": "not_found"} for ref in unknown]
        stdout.out(json.dumps(rows))
    else:
        for item in outcome:
            if not item.refused:
                stdout.print(f"job {item.job_id}: {CANCEL_MESSAGES[item.outcome]}", highlight=False)
    for item in refused:
        error_line(f"job {item.job_id} was not cancelled: it is already {item.status}")
    if absent:
        error_line(f"no job {', '.join(map(str, absent))}")
    for ref in unknown:
        error_line(missing(ref))
    if refused or absent or unknown:
        raise typer.Exit(1)


async def _cancel(
    settings: Settings, refs: list[JobRef]
) -> tuple[list[Cancellation], list[int], list[JobRef]]:
    from mealplan_cli.core.db.connect import open_database

    async with open_database(settings) as db:
        job_ids, unknown = await resolve(db, refs)
        outcome = await Queue(db).cancel(job_ids) if job_ids else []
        return outcome, job_ids, unknown
