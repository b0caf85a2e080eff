"""``mealworker migrate``: apply, list, print or export the SQL migrations; ``mealworker db``:
the embedded server's status, and stopping it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mealplan_cli.cli.app import app, load_settings, run_async, run_checked, stdout

if TYPE_CHECKING:
    from mealplan_cli.core.db.embedded import ServerState
    from mealplan_cli.core.db.migrations import Migration, MigrationStatus
    from mealplan_cli.settings.config import Settings


@app.command()
def migrate(
    ctx: typer.Context,
    status: Annotated[bool, typer.Option("--status", help="List applied and pending.")] = False,
    sql: Annotated[
        bool,
        typer.Option("--sql", help="Print the pending SQL (for Supabase's SQL editor)."),
    ] = False,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Take over a Node-worker database: move its background_jobs aside to "
            "mealworker_legacy, fit meal_plans, queue its pending jobs again.",
        ),
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="DIR",
            help="Write the migration files into DIR (an app's supabase/migrations), for "
            "`supabase db push`; touches no database.",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Apply the SQL migrations in order (each in its own transaction), recorded in
    mealworker's own ledger (never in the app's Supabase CLI ledger)."""
    from mealplan_cli.core.db.connect import transport_of
    from mealplan_cli.core.db.migrations import (
        LEDGER,
        MigrationStatus,
        bundled_migrations,
        export_migrations,
        pending_sql,
    )

    if export is not None:
        exported = run_checked(ctx, lambda: export_migrations(export))
        for name in exported.written:
            stdout.print(f"wrote {export / name}", highlight=False)
        for name in exported.unchanged:
            stdout.print(f"unchanged {export / name}", highlight=False)
        return
    settings = load_settings(ctx)
    if sql and transport_of(settings) == "rest":
        stdout.out(pending_sql([MigrationStatus(m, False) for m in bundled_migrations()]))
        return
    statuses, applied, notes, legacy = run_async(
        ctx, _migrate(settings, apply=not (status or sql), adopt=adopt)
    )
    if sql:
        stdout.out(pending_sql(statuses) or "-- nothing pending")
    elif status:
        from rich.table import Table

        table = Table("version", "name", "state", title="Migrations", title_justify="left")
        for item in statuses:
            if item.edited:
                state = "edited after it ran"
            elif item.via_supabase_cli:
                state = f"applied (Supabase CLI; `migrate` records it in {LEDGER})"
            else:
                state = "applied" if item.applied else "pending"
            table.add_row(item.migration.version, item.migration.name, state)
        stdout.print(table)
        if legacy is not None:
            stdout.print(f"[yellow]note:[/] {legacy}", highlight=False, soft_wrap=True)
    else:
        for note in notes:
            stdout.print(f"adopted: {note}", highlight=False, soft_wrap=True)
        for migration in applied:
            stdout.print(f"applied {migration.file_name}", highlight=False)
        if not applied:
            stdout.print("database is up to date")


MIGRATE_NEEDS_SQL = (
    "migrate needs DATABASE_URL (Supabase: Project Settings > Database > connection string, "
    "direct or session pooler); without it, run `mealworker migrate --sql` and paste the "
    "output into Supabase's SQL editor"
)


async def _migrate(
    settings: Settings, *, apply: bool, adopt: bool
) -> tuple[list[MigrationStatus], list[Migration], list[str], str | None]:
    """(statuses, files applied, what adoption did, why the database needs --adopt)"""
    from mealplan_cli.core.db.connect import direct_connection, postgres_url
    from mealplan_cli.core.db.migrations import apply_migrations, migration_status
    from mealplan_cli.mealplans import legacy_schema
    from mealplan_cli.mealplans.adoption import find_node_worker_schema

    url = await postgres_url(settings, rest_advice=MIGRATE_NEEDS_SQL)
    notes: list[str] = []
    async with direct_connection(url) as conn:
        applied = (
            await apply_migrations(
                conn, prior_schema=find_node_worker_schema, adopt=adopt, report=notes
            )
            if apply
            else []
        )
        statuses = await migration_status(conn)
        legacy = None if apply or statuses[0].applied else await legacy_schema.inspect(conn)
        return statuses, applied, notes, legacy.refusal() if legacy else None


db_app = typer.Typer(
    name="db",
    help="The embedded PostgreSQL (used when neither DATABASE_URL nor SUPABASE_URL is set).",
    no_args_is_help=True,
)
app.add_typer(db_app)


def _server_view(state: ServerState | None, data_dir: Path) -> dict[str, object]:
    if state is None:
        return {"running": False, "data_dir": str(data_dir)}
    return {"running": True, "data_dir": str(data_dir), "pid": state.pid, "url": state.url}


@db_app.command("status")
def db_status(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether the embedded PostgreSQL is running, and where."""
    from mealplan_cli.core.db.connect import data_dir_of
    from mealplan_cli.core.db.embedded import running_server

    data_dir = data_dir_of(load_settings(ctx))
    view = _server_view(running_server(data_dir), data_dir)
    if json_output:
        stdout.out(json.dumps(view))
    elif view["running"]:
        stdout.print(f"running in {data_dir} (pid {view['pid']})", highlight=False)
    else:
        stdout.print(f"not running ({data_dir})", highlight=False)


@db_app.command("stop")
def db_stop(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL; the next command starts it again."""
    from mealplan_cli.core.db.connect import data_dir_of
    from mealplan_cli.core.db.embedded import stop_server

    data_dir = data_dir_of(load_settings(ctx))
    stopped = run_checked(ctx, lambda: stop_server(data_dir))
    if stopped is None:
        stdout.print(f"not running ({data_dir})", highlight=False)
    else:
        stdout.print(f"stopped (pid {stopped.pid})", highlight=False)
