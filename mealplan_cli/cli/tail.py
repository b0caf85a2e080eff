"""``mealworker tail``: job events as they happen (history first with ``--since``)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mealplan_cli.cli.app import app, load_settings, ready, run_async, stdout
from mealplan_cli.cli.durations import ago
from mealplan_cli.db.base import Row
from mealplan_cli.queue import Queue

EVENTS = (
    "enqueued",
    "claimed",
    "progress",
    "retry_scheduled",
    "completed",
    "failed",
    "released",
    "requeued",
    "cancel_requested",
    "cancelled",
    "lease_lost",
)
"""Every event the queue writes (the triggers and functions in ``supabase/migrations``)."""

if TYPE_CHECKING:
    from rich.text import Text

    from mealplan_cli.config import Settings

EVENT_STYLES = {
    "failed": "bold red",
    "retry_scheduled": "yellow",
    "lease_lost": "red",
    "requeued": "yellow",
    "completed": "green",
    "cancelled": "magenta",
}


def _detail(row: Row) -> str:
    detail = row.get("detail") or {}
    if not isinstance(detail, dict):
        return str(detail)
    if detail.get("last_error"):
        return str(detail["last_error"])
    if "stage" in detail:
        return f"{detail['stage']} {detail.get('done', '')}/{detail.get('total', '')}".strip()
    return " ".join(f"{k}={v}" for k, v in detail.items() if v is not None)


def _line(row: Row) -> Text:
    from rich.text import Text

    created = row.get("created_at")
    when = (
        created.astimezone().strftime("%H:%M:%S")
        if isinstance(created, datetime)
        else str(created)[11:19]
    )
    text = Text(f"{when} job {row['job_id']:<7} {row.get('job_type') or '':<18} ")
    text.append(f"{row['event']:<16}", style=EVENT_STYLES.get(str(row["event"]), ""))
    text.append(f" {row.get('worker_id') or '-':<22} attempt {row.get('attempt') or 0}  ")
    text.append(_detail(row), style="dim")
    return text


@app.command()
def tail(
    ctx: typer.Context,
    job: Annotated[int | None, typer.Option("--job", help="Only this job.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    event: Annotated[
        list[str] | None, typer.Option("--event", help="Only these events (repeatable).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Show history from this long ago first, e.g. 10m.")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep following.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Follow job events live: time, job, type, event, worker, attempt, detail. Ctrl-C exits."""
    unknown = [name for name in event or [] if name not in EVENTS]
    if unknown:
        raise typer.BadParameter(
            f"unknown event {', '.join(map(repr, unknown))}; the events are {', '.join(EVENTS)}",
            param_hint="--event",
        )
    settings = load_settings(ctx)

    def wanted(row: Row) -> bool:
        return (
            (job is None or row["job_id"] == job)
            and (job_type is None or row.get("job_type") == job_type)
            and (not event or row["event"] in event)
        )

    def show(row: Row) -> None:
        if not wanted(row):
            return
        if as_json:
            stdout.out(json.dumps(row, default=str))
        else:
            stdout.print(_line(row), soft_wrap=True)

    start = ago(since, "--since") or datetime.now(UTC)
    run_async(ctx, _follow(settings, start, follow, show), until_interrupted=True)


async def _follow(settings: Settings, start: datetime, follow: bool, show: Any) -> None:
    from mealplan_cli.db.connect import open_database

    async with open_database(settings) as db:
        queue = Queue(db)
        last_id: int | None = None
        ready_said = False
        while True:
            if last_id is None:
                rows = await queue.events_from(start)
            else:
                rows = await queue.events_since(last_id)
            for row in rows:
                show(row)
                last_id = int(row["id"])
            if len(rows) == 500:
                continue  # more history waiting
            if not follow:
                return
            ready_said = ready_said or ready("following job events; Ctrl-C to stop")
            await asyncio.sleep(0.5)
