"""``mealworker prune``: finished jobs and old events leave, in short batches (for cron)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from mealplan_cli.cli.app import app, load_settings, run_async, stdout
from mealplan_cli.cli.durations import ago
from mealplan_cli.cli.wording import plural
from mealplan_cli.core.queue import Pruned, Queue

if TYPE_CHECKING:
    from mealplan_cli.settings.config import Settings


@app.command()
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option(help="Jobs that finished longer ago than this, e.g. 30d.")
    ] = "30d",
    events_older_than: Annotated[
        str | None,
        typer.Option(help="Events older than this (default: --older-than); 'never' keeps all."),
    ] = None,
    include_failed: Annotated[
        bool, typer.Option("--include-failed", help="Failed jobs too (kept by default).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete completed and cancelled jobs that finished long ago, and old events, in short
    batches (for cron). Pending and processing jobs, their events, and meal plans are kept."""
    statuses = ("completed", "cancelled") + (("failed",) if include_failed else ())
    now = datetime.now(UTC)
    finished_before = ago(older_than, "--older-than", now=now)
    events = older_than if events_older_than is None else events_older_than
    events_before = None
    if events.strip().lower() != "never":
        events_before = ago(
            events, "--events-older-than", now=now, also="or never to keep every event"
        )
    settings = load_settings(ctx)
    pruned = run_async(
        ctx, _prune(settings, finished_before, statuses, events_before, dry_run=dry_run)
    )
    if as_json:
        stdout.out(
            json.dumps(
                {
                    "jobs": pruned.jobs,
                    "events": pruned.events,
                    "statuses": list(statuses),
                    "finished_before": finished_before.isoformat(),
                    "events_before": events_before.isoformat() if events_before else None,
                    "dry_run": dry_run,
                }
            )
        )
        return
    verb = "would delete" if dry_run else "deleted"
    events_part = (
        f" and {plural(pruned.events, 'event')} before {events_before:%Y-%m-%d %H:%M} UTC"
        if events_before
        else "; events kept"
    )
    stdout.print(
        f"{verb} {plural(pruned.jobs, 'job')} ({', '.join(statuses)}) finished before "
        f"{finished_before:%Y-%m-%d %H:%M} UTC{events_part}",
        highlight=False,
    )


async def _prune(
    settings: Settings,
    finished_before: datetime,
    statuses: tuple[str, ...],
    events_before: datetime | None,
    *,
    dry_run: bool,
) -> Pruned:
    from mealplan_cli.core.db.connect import open_database

    async with open_database(settings) as db:
        return await Queue(db).prune(
            finished_before=finished_before,
            statuses=statuses,
            events_before=events_before,
            dry_run=dry_run,
        )
