"""``mealworker migrate``: apply, list or print the SQL migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mealplan_cli.cli.app import app, load_settings, run_async, stdout

if TYPE_CHECKING:
    from mealplan_cli.config import Settings
    from mealplan_cli.db.migrations import Migration, MigrationStatus


@app.command()
def migrate(
    ctx: typer.Context,
    status: Annotated[bool, typer.Option("--status", help="List applied and pending.")] = False,
    sql: Annotated[
        bool,
        typer.Option("--sql", help="Print the pending SQL (for Supabase's SQL editor)."),
    ] = False,
) -> None:
    """Apply the SQL migrations in order (each in its own transaction), recorded like the
    Supabase CLI records them."""
    from rich.table import Table

    from mealplan_cli.db.connect import transport_of
    from mealplan_cli.db.migrations import MigrationStatus, bundled_migrations, pending_sql

    settings = load_settings(ctx)
    if sql and transport_of(settings) == "rest":
        stdout.out(pending_sql([MigrationStatus(m, False) for m in bundled_migrations()]))
        return
    statuses, applied = run_async(ctx, _migrate(settings, apply=not (status or sql)))
    if sql:
        stdout.out(pending_sql(statuses) or "-- nothing pending")
    elif status:
        table = Table("version", "name", "state", title="Migrations", title_justify="left")
        for item in statuses:
            state = (
                "edited after it ran" if item.edited else ("applied" if item.applied else "pending")
            )
            table.add_row(item.migration.version, item.migration.name, state)
        stdout.print(table)
    elif applied:
        for migration in applied:
            stdout.print(f"applied {migration.file_name}")
    else:
        stdout.print("database is up to date")


MIGRATE_NEEDS_SQL = (
    "migrate needs DATABASE_URL (Supabase: Project Settings > Database > connection string, "
    "direct or session pooler); without it, run `mealworker migrate --sql` and paste the "
    "output into Supabase's SQL editor"
)


async def _migrate(
    settings: Settings, *, apply: bool
) -> tuple[list[MigrationStatus], list[Migration]]:
    from mealplan_cli.db.connect import direct_connection, postgres_url
    from mealplan_cli.db.migrations import apply_migrations, migration_status

    url = await postgres_url(settings, rest_advice=MIGRATE_NEEDS_SQL)
    async with direct_connection(url) as conn:
        applied = await apply_migrations(conn) if apply else []
        return await migration_status(conn), applied
