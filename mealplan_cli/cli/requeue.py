"""``mealworker requeue`` and ``mealworker cancel``: put jobs back, or stop them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from mealplan_cli.cli.app import app, load_settings, run_async, stderr, stdout
from mealplan_cli.cli.durations import ago
from mealplan_cli.cli.wording import plural
from mealplan_cli.db.base import Row
from mealplan_cli.queue import Cancellation, Queue

if TYPE_CHECKING:
    from mealplan_cli.config import Settings


@app.command()
def requeue(
    ctx: typer.Context,
    job_ids: Annotated[list[int] | None, typer.Argument(help="Jobs to requeue by id.")] = None,
    stale: Annotated[
        bool, typer.Option("--stale", help="Jobs whose worker died (lease expired). For cron.")
    ] = False,
    failed: Annotated[
        bool, typer.Option("--failed", help="Failed jobs (with the filters).")
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
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Put jobs back in the queue: --stale (from cron), --failed with filters, or by id.
    A meal plan job's meal plan goes back to pending with it."""
    if sum((stale, failed, bool(job_ids))) != 1:
        raise typer.BadParameter("give exactly one of --stale, --failed or job ids")
    changed_since = ago(since, "--since")  # a typo is refused before any connection
    settings = load_settings(ctx)
    if stale:
        moved = run_async(ctx, _stale(settings))
        if as_json:
            stdout.out(json.dumps([{"job_id": i, "status": s} for i, s in moved]))
        elif moved:  # silent when nothing changed, so cron mails only news
            for job_id, status in moved:
                stdout.print(f"job {job_id}: lease expired, now {status}", highlight=False)
        return
    rows = run_async(
        ctx,
        _requeue(
            settings,
            job_ids=job_ids,
            since=changed_since,
            job_type=job_type,
            error_contains=error_contains,
            limit=limit,
            reset_attempts=reset_attempts,
            dry_run=dry_run,
        ),
    )
    if as_json:
        stdout.out(json.dumps(rows, default=str))
        return
    verb = "would requeue" if dry_run else "requeued"
    from rich.table import Table

    table = Table("job", "type", "was", "last error", title=f"{verb} {plural(len(rows), 'job')}")
    for row in rows:
        table.add_row(
            str(row["job_id"]), row["job_type"], row["previous_status"], row.get("last_error") or ""
        )
    stdout.print(table)


async def _stale(settings: Settings) -> list[tuple[int, str]]:
    from mealplan_cli.db.connect import open_database

    async with open_database(settings) as db:
        return await Queue(db).requeue_stale()


async def _requeue(
    settings: Settings,
    *,
    job_ids: list[int] | None,
    since: datetime | None,
    job_type: str | None,
    error_contains: str | None,
    limit: int,
    reset_attempts: bool,
    dry_run: bool,
) -> list[Row]:
    from mealplan_cli.db.connect import open_database

    async with open_database(settings) as db:
        return await Queue(db).requeue_jobs(
            job_ids=job_ids,
            statuses=("failed", "cancelled") if job_ids else ("failed",),
            job_type=job_type,
            since=since,
            error_contains=error_contains,
            reset_attempts=reset_attempts,
            limit=limit,
            dry_run=dry_run,
        )


CANCEL_MESSAGES = {
    "cancelled": "cancelled",
    "cancel_requested": "cancel requested; its worker stops it at its next heartbeat",
    "already_requested": "cancel already requested; its worker stops it at its next heartbeat",
    "already_cancelled": "already cancelled",
}


@app.command()
def cancel(
    ctx: typer.Context,
    job_ids: Annotated[list[int], typer.Argument(help="Jobs to cancel.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cancel jobs: a pending one at once, a processing one when its worker next checks in.
    Exit 1 when a job could not be cancelled (completed, failed or unknown)."""
    settings = load_settings(ctx)
    outcome = run_async(ctx, _cancel(settings, job_ids))
    found = {item.job_id for item in outcome}
    missing = [job_id for job_id in dict.fromkeys(job_ids) if job_id not in found]
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
        rows += [{"job_id": job_id, "outcome": "not_found"} for job_id in missing]
        stdout.out(json.dumps(rows))
    else:
        for item in outcome:
            if not item.refused:
                stdout.print(f"job {item.job_id}: {CANCEL_MESSAGES[item.outcome]}", highlight=False)
        for item in refused:
            stderr.print(
                f"[bold red]error:[/] job {item.job_id} was not cancelled: it is already "
                f"{item.status}",
                highlight=False,
            )
        if missing:
            stderr.print(
                f"[bold red]error:[/] no job {', '.join(map(str, missing))}", highlight=False
            )
    if refused or missing:
        raise typer.Exit(1)


async def _cancel(settings: Settings, job_ids: list[int]) -> list[Cancellation]:
    from mealplan_cli.db.connect import open_database

    async with open_database(settings) as db:
        return await Queue(db).cancel(job_ids)
