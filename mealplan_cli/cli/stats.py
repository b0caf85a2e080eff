"""``mealworker stats``: the queue at a glance, for people, scripts and monitors."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mealplan_cli.cli.app import (
    app,
    load_settings,
    ready,
    run_async,
    stderr,
    stdout,
)
from mealplan_cli.cli.durations import utc_minutes
from mealplan_cli.cli.wording import plural
from mealplan_cli.core.queue import Queue, WaitingJobs
from mealplan_cli.ops.errors import ConfigurationError
from mealplan_cli.ops.monitoring import METRICS, QueueHealth, Threshold

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

    from mealplan_cli.core.db.base import Database
    from mealplan_cli.settings.config import Settings


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    seconds = float(value)
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def waiting_view(waiting: list[WaitingJobs]) -> Table:
    from rich.table import Table

    table = Table(
        "job type",
        "jobs",
        "waiting until",
        "why",
        title="Waiting jobs (no attempt spent)",
        title_justify="left",
    )
    for group in waiting:
        until = utc_minutes(group.first_run_at)
        if group.last_run_at != group.first_run_at:
            until += f" .. {utc_minutes(group.last_run_at)}"
        table.add_row(group.job_type, str(group.jobs), until, group.reason)
    return table


def budget_view(row: dict[str, Any]) -> Table:
    """One budget (key and model) of the fleet's OpenAI budget: the limit, today's charge and
    use, the cost, the caps, 429s, waits, and what holds calls back now."""
    from rich.table import Table

    table = Table(
        title=f"OpenAI budget {row.get('budget_key')} / {row.get('model')} (today = UTC day)",
        title_justify="left",
        show_header=False,
    )
    table.add_column()
    table.add_column(justify="right")
    limit = row.get("tokens_limit")
    table.add_row(
        "limit (per minute)",
        f"{int(limit):,} tokens, learned" if limit else "not learned yet",
    )
    table.add_row("bucket free now", f"{float(row.get('tokens_free_share') or 0):.0%}")
    charged = f"{int(row.get('tokens_charged') or 0):,} tokens"
    if row.get("daily_tokens_cap"):
        charged += f" of a {int(row['daily_tokens_cap']):,} daily cap"
    table.add_row("charged today", charged)
    table.add_row(
        "used today (in / cached / out)",
        f"{int(row.get('tokens_input') or 0):,} / {int(row.get('tokens_cached') or 0):,} / "
        f"{int(row.get('tokens_output') or 0):,}",
    )
    cost = f"${float(row.get('cost_usd') or 0):.4f}"
    spent = row.get("key_usd_spent")
    if spent is not None and abs(float(spent) - float(row.get("cost_usd") or 0)) >= 0.00005:
        cost += f" (all models of the key: ${float(spent):.4f})"
    if row.get("daily_usd_cap") is not None:
        cost += f" of a ${float(row['daily_usd_cap']):.2f} daily cap"
    table.add_row("cost today", cost)
    table.add_row("429s today", str(row.get("refused") or 0))
    table.add_row("waited today", _seconds(int(row.get("waited_ms") or 0) / 1000))
    if row.get("calls_waiting"):
        table.add_row(
            "calls waiting their turn",
            f"{int(row['calls_waiting']):,} (longest "
            f"{_seconds(int(row.get('longest_wait_ms') or 0) / 1000)} so far)",
        )
    if row.get("capped_until"):
        by = "USD" if row.get("capped_by") == "usd" else "token"
        until = utc_minutes(row["capped_until"])
        state = f"[red]daily {by} cap reached: jobs wait until {until}[/]"
    elif row.get("blocked_until"):
        state = f"[yellow]a 429 holds calls until {utc_minutes(row['blocked_until'])}[/]"
    else:
        state = "open"
    table.add_row("state", state)
    return table


def health_view(
    health: QueueHealth,
    budgets: list[dict[str, Any]] | None = None,
    waiting: list[WaitingJobs] | None = None,
    database: str = "",
) -> Group:
    from rich.console import Group
    from rich.table import Table

    raw, metrics = health.raw, health.metrics()
    title = f"Queue in {database}" if database else "Queue"
    overview = Table(title=title, title_justify="left", show_header=False)
    overview.add_column()
    overview.add_column(justify="right")
    for status, count in (raw.get("by_status") or {}).items():
        overview.add_row(status, str(count))
    overview.add_row("lag (oldest runnable pending)", _seconds(raw.get("oldest_pending_seconds")))
    for window in ("5m", "1h", "24h"):
        overview.add_row(
            f"completed, last {window}", str((raw.get("completed") or {}).get(window, 0))
        )
    overview.add_row("failure rate, last 1h", f"{metrics['failure_rate']:.1%}")
    overview.add_row("retry rate, last 1h", f"{metrics['retry_rate']:.1%}")
    durations = raw.get("processing_seconds") or {}
    overview.add_row(
        "processing p50 / p95 / max (24h)",
        " / ".join(_seconds(durations.get(k)) for k in ("p50", "p95", "max")),
    )
    if "plans_24h" in raw:
        overview.add_row("meal plans completed, 24h", str(raw["plans_24h"]))
    cost = raw.get("openai_24h") or {}
    overview.add_row(
        "OpenAI usage, 24h",
        f"{plural(int(cost.get('plans') or 0), 'plan')} that called it, "
        f"{cost.get('input_tokens', 0)} in / "
        f"{cost.get('output_tokens', 0)} out tokens, ${float(cost.get('cost_usd') or 0):.4f}"
        + (
            f" (${float(cost['cost_per_plan_usd']):.4f}/plan)"
            if cost.get("cost_per_plan_usd")
            else ""
        ),
    )
    statuses = ("pending", "processing", "completed", "failed", "cancelled")
    types = Table("job type", *statuses)
    for job_type, counts in (raw.get("by_type") or {}).items():
        types.add_row(job_type, *(str(counts.get(status, 0)) for status in statuses))
    workers = Table("worker", "host", "pid", "version", "jobs", "RSS", "last seen", "state")
    for worker in health.workers:
        state = worker["state"]
        rss = worker.get("rss_bytes")
        workers.add_row(
            str(worker["id"]),
            str(worker.get("host") or ""),
            str(worker.get("pid") or ""),
            str(worker.get("version") or ""),
            f"{worker.get('active_jobs', 0)}/{worker.get('max_jobs') or '?'}",
            f"{rss / 2**20:.0f} MB" if rss else "-",
            _seconds(worker.get("seconds_since_seen")) + " ago",
            f"[red]{state}[/]" if worker["silent"] else state,
        )
    errors = Table("count", "last error (24h)", "last seen")
    for error in raw.get("recent_errors") or []:
        errors.add_row(str(error["count"]), str(error["message"])[:120], str(error["last_at"])[:19])
    parts: list[Any] = [overview, types, workers, errors]
    if waiting:
        parts.append(waiting_view(waiting))
    parts += [budget_view(row) for row in budgets or []]
    return Group(*parts)


@app.command()
def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.5, help="Seconds between refreshes.")] = 2.0,
    fail_if: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-if",
            metavar="METRIC>VALUE",
            help="Exit 1 when a metric crosses a threshold, e.g. lag>300 or "
            "failure_rate>0.1 (repeatable; a malformed one exits 2). Metrics: "
            f"{', '.join(METRICS)}.",
        ),
    ] = None,
) -> None:
    """Counts, lag, throughput, processing times, failures, recent errors, workers, jobs
    waiting (deferred, with why and until when), the OpenAI budget and its cost today, and
    which database they were read from. Exit 1 when a --fail-if threshold is crossed."""
    thresholds = [_threshold(text) for text in fail_if or []]
    settings = load_settings(ctx)
    from mealplan_cli.core.db.connect import describe_database

    database = describe_database(settings)
    if watch:
        run_async(ctx, _watch(settings, interval, database), until_interrupted=True)
        return
    health, budgets, waiting = run_async(ctx, _health(settings))
    if as_json:
        shown = {
            "database": database,
            **health.as_json(),
            "waiting": [group.as_json() for group in waiting],
            "budget": budgets,
        }
        stdout.out(json.dumps(shown, default=str))
    else:
        stdout.print(health_view(health, budgets, waiting, database))
    crossed = [t for t in thresholds if t.crossed(health.metrics())]
    if crossed:
        values = health.metrics()
        for threshold in crossed:
            stderr.print(
                f"threshold crossed: {threshold} (now {values[threshold.metric]:g})",
                highlight=False,
            )
        raise typer.Exit(ALERT_EXIT_CODE)


ALERT_EXIT_CODE = 1
"""``stats --fail-if`` when a threshold is crossed; a malformed threshold is a usage error (2)."""


def _threshold(text: str) -> Threshold:
    """A ``--fail-if`` expression; a malformed one is refused like any bad option (exit 2),
    so a monitor can tell a typo in its own command from an alert."""
    try:
        return Threshold.parse(text)
    except ConfigurationError as error:
        raise typer.BadParameter(
            str(error).removeprefix(f"--fail-if {text!r}: "), param_hint=f"--fail-if {text!r}"
        ) from None


async def _figures(db: Database) -> dict[str, Any]:
    """The queue's figures and the meal plans' (``plans_24h``, ``openai_24h``), one object."""
    from mealplan_cli.mealplans.plans import MealPlans

    return {**await Queue(db).stats(), **await MealPlans(db).stats()}


Read = tuple[QueueHealth, list[dict[str, Any]], list[WaitingJobs]]
"""What ``stats`` shows: the queue's health, the OpenAI budgets, the waiting jobs."""


async def _read(db: Database, settings: Settings) -> Read:
    from mealplan_cli.mealplans.budget import budget_stats

    health = QueueHealth(await _figures(db), settings.lease_seconds)
    return health, await budget_stats(db), await Queue(db).waiting()


async def _health(settings: Settings) -> Read:
    from mealplan_cli.core.db.connect import open_database

    async with open_database(settings) as db:
        return await _read(db, settings)


async def _watch(settings: Settings, interval: float, database: str) -> None:
    from rich.live import Live

    from mealplan_cli.core.db.connect import open_database

    async with open_database(settings) as db:
        said = False
        with Live(console=stdout, refresh_per_second=4) as live:
            try:
                while True:
                    live.update(health_view(*await _read(db, settings), database=database))
                    said = said or ready(f"refreshing every {interval:g}s; Ctrl-C to stop")
                    await asyncio.sleep(interval)
            except asyncio.CancelledError:
                return
