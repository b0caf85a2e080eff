"""``mealworker tail``: job events as they happen (history first with ``--since``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mealplan_cli.cli.app import app, fail, load_settings, ready, run_async, stdout
from mealplan_cli.cli.durations import ago, utc_minutes
from mealplan_cli.cli.job_refs import JobRef, missing, parse_ref, resolve
from mealplan_cli.core.db.base import Row
from mealplan_cli.core.queue import Queue

EVENTS = (
    "enqueued",
    "claimed",
    "progress",
    "retry_scheduled",
    "deferred",
    "budget_wait",
    "completed",
    "failed",
    "released",
    "requeued",
    "cancel_requested",
    "cancelled",
    "lease_lost",
)
"""Every event the queue writes (the triggers and functions in ``supabase/migrations``), and
those the meal-plan handler notes (``budget_wait``)."""

if TYPE_CHECKING:
    from rich.text import Text

    from mealplan_cli.settings.config import Settings

EVENT_STYLES = {
    "failed": "bold red",
    "retry_scheduled": "yellow",
    "deferred": "cyan",
    "budget_wait": "cyan",
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
    if row.get("event") == "deferred" and detail.get("reason"):
        return f"{detail['reason']} (waits until {utc_minutes(detail.get('run_at'))})"
    if row.get("event") == "budget_wait" and "waited_ms" in detail:
        seconds = float(detail["waited_ms"]) / 1000
        why = f": {detail['why']}" if detail.get("why") else ""
        return f"waited {seconds:.1f}s for the OpenAI budget ({detail.get('model', '')}){why}"
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
    job: Annotated[
        str | None,
        typer.Option("--job", help="Only this job: its id, or its meal plan's id (a uuid)."),
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event", help=f"Only these events (repeatable): {', '.join(EVENTS)}.", metavar="EVENT"
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Show history from this long ago first, e.g. 10m.")
    ] = None,
    last: Annotated[
        int,
        typer.Option(min=0, max=10_000, help="Without --since, show the last this many first."),
    ] = 20,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep following.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Job events: the last ones (or those since --since), then new ones as they happen, one
    line each: time, job, type, event, worker, attempt, detail. Ctrl-C exits."""
    unknown = [name for name in event or [] if name not in EVENTS]
    if unknown:
        raise typer.BadParameter(
            f"unknown event {', '.join(map(repr, unknown))}; the events are {', '.join(EVENTS)}",
            param_hint="--event",
        )
    ref = parse_ref(job, "--job") if job is not None else None
    start = ago(since, "--since")
    settings = load_settings(ctx)
    wanted = Filter(ref, job_type, tuple(event or ()))

    def show(row: Row) -> None:
        if as_json:
            stdout.out(json.dumps(row, default=str))
        else:
            stdout.print(_line(row), soft_wrap=True)

    window = History(start) if start is not None else History(None, last)
    found = run_async(ctx, _follow(settings, window, wanted, follow, show), until_interrupted=True)
    if not found:
        assert ref is not None
        fail(missing(ref))


@dataclass(frozen=True)
class Filter:
    """Which events ``tail`` shows."""

    job: JobRef | None
    job_type: str | None
    events: tuple[str, ...]

    def matches(self, row: Row, job_id: int | None) -> bool:
        return (
            (job_id is None or row["job_id"] == job_id)
            and (self.job_type is None or row.get("job_type") == self.job_type)
            and (not self.events or row["event"] in self.events)
        )


@dataclass(frozen=True)
class History:
    """What ``tail`` shows before it follows: events since a time, or the last few."""

    since: datetime | None
    last: int = 20


async def _follow(
    settings: Settings, history: History, wanted: Filter, follow: bool, show: Any
) -> bool:
    """Show the history, then follow; False when ``--job`` names a meal plan without a job."""
    from mealplan_cli.core.db.connect import open_database

    async with open_database(settings) as db:
        queue = Queue(db)
        job_id: int | None = None
        if wanted.job is not None:
            ids, unknown = await resolve(db, [wanted.job])
            if unknown or await queue.get_job(ids[0]) is None:
                return False
            job_id = ids[0]
        last_id = 0
        start = history.since or datetime.now(UTC)
        if history.since is None:
            rows = await queue.recent_events(
                history.last, job_id=job_id, job_type=wanted.job_type, events=wanted.events
            )
            for row in rows:
                show(row)
                last_id = int(row["id"])
            if not follow:
                return True
        ready_said = False
        while True:
            # From a time until the first event is seen, then by id: no event twice, none lost.
            if last_id == 0:
                pending = await queue.events_from(start)
            else:
                pending = await queue.events_since(last_id, job_id=job_id)
            for row in pending:
                if int(row["id"]) > last_id and wanted.matches(row, job_id):
                    show(row)
                last_id = max(last_id, int(row["id"]))
            if len(pending) == 500:
                continue  # more history waiting
            if not follow:
                return True
            ready_said = ready_said or ready("following job events; Ctrl-C to stop")
            await asyncio.sleep(0.5)
