"""Choosing and opening the transport the settings ask for."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from mealplan_cli.core.db.base import Database
from mealplan_cli.core.db.postgres import PostgresDatabase, connect
from mealplan_cli.ops.errors import ConfigurationError
from mealplan_cli.ops.redact import redact_dsn
from mealplan_cli.settings.config import Settings

if TYPE_CHECKING:
    from mealplan_cli.core.db.rest import RestDatabase

NEEDS_DIRECT_CONNECTION = (
    "this needs a direct PostgreSQL connection: set DATABASE_URL to Supabase's direct or "
    "session-pooler connection string (Project Settings > Database)"
)


def transport_of(settings: Settings) -> str:
    """Which transport the settings select: postgres, rest or embedded."""
    if settings.database_url is not None:
        return "postgres"
    if settings.supabase_url is not None:
        return "rest"
    return "embedded"


def describe_database(settings: Settings) -> str:
    """Which database the settings select, in words an operator can check, never a password:
    the connection string masked, the Supabase project's URL, or the embedded folder."""
    transport = transport_of(settings)
    if transport == "postgres":
        assert settings.database_url is not None
        return redact_dsn(settings.database_url.get_secret_value())
    if transport == "rest":
        return f"{redact_dsn(str(settings.supabase_url))} (over REST)"
    return f"the embedded database in {data_dir_of(settings)}"


def data_dir_of(settings: Settings) -> Path:
    # The embedded server's and the migrations' modules load only on the embedded transport:
    # a worker on DATABASE_URL starts faster without them.
    from mealplan_cli.core.db.embedded import default_data_dir

    return settings.mealworker_data_dir or default_data_dir()


def service_manager(environ: Mapping[str, str], interactive: bool) -> str | None:
    """What runs this process unattended, if anything: PM2, systemd, or no terminal at all."""
    if "PM2_HOME" in environ or "pm_id" in environ:
        return "PM2"
    if not interactive and ("INVOCATION_ID" in environ or "JOURNAL_STREAM" in environ):
        return "systemd"
    if not interactive:
        return "a service manager or script (no terminal on stdin)"
    return None


def worker_database_notice(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    interactive: bool | None = None,
) -> str | None:
    """What ``work`` must say about the database it is about to drain, or why it refuses.

    The embedded database is right for a first try at a terminal, and wrong for a deployed
    worker: a ``.env`` copied from ``env.example`` with the Supabase lines still commented out
    would otherwise drain a private database forever, while the app's jobs wait. So under a
    service manager it takes an explicit ``MEALWORKER_DATA_DIR`` or ``MEALWORKER_EMBEDDED=1``.
    """
    if transport_of(settings) != "embedded":
        return None
    folder = data_dir_of(settings)
    env = os.environ if environ is None else environ
    manager = service_manager(env, sys.stdin.isatty() if interactive is None else interactive)
    chosen = settings.mealworker_embedded or settings.mealworker_data_dir is not None
    if manager is not None and not chosen:
        raise ConfigurationError(
            f"refusing to run the worker under {manager} on the embedded database in {folder}: "
            "neither DATABASE_URL nor SUPABASE_URL is set, so the jobs your app queues would "
            "never reach it. Set DATABASE_URL (or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY); "
            "to use the embedded database on purpose, set MEALWORKER_EMBEDDED=1 or "
            "MEALWORKER_DATA_DIR"
        )
    return (
        f"using the embedded database in {folder} (neither DATABASE_URL nor SUPABASE_URL is "
        "set): jobs your app queues in Supabase do not reach this worker"
    )


async def postgres_url(settings: Settings, *, rest_advice: str = NEEDS_DIRECT_CONNECTION) -> str:
    """``DATABASE_URL``, or the embedded server's URL (started if it is not running)."""
    transport = transport_of(settings)
    if transport == "postgres":
        assert settings.database_url is not None
        return settings.database_url.get_secret_value()
    if transport == "rest":
        raise ConfigurationError(rest_advice)
    from mealplan_cli.core.db.embedded import start_embedded

    return await start_embedded(data_dir_of(settings))


@asynccontextmanager
async def direct_connection(
    url: str, *, connect_timeout: float = 5
) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """One autocommit connection (for migrations), with a clear error when it cannot open."""
    conn = await connect(url, connect_timeout=connect_timeout, autocommit=True)
    async with conn:
        yield conn


def _rest_database(settings: Settings) -> RestDatabase:
    from mealplan_cli.core.db.rest import RestDatabase  # httpx and supabase-py: this transport only

    assert settings.supabase_url is not None
    if settings.supabase_service_role_key is None:
        raise ConfigurationError(
            "SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not: set it to the project's "
            "service role key (or an sb_secret_ key), or set DATABASE_URL instead"
        )
    return RestDatabase(settings.supabase_url, settings.supabase_service_role_key)


async def _migrate_embedded(url: str, data_dir: Path, connect_timeout: float) -> None:
    """Apply the migrations once per server start (and per set of bundled files): the commands
    after the first find them recorded and skip the check."""
    from mealplan_cli.core.db.embedded import is_migrated, mark_migrated
    from mealplan_cli.core.db.migrations import apply_migrations, bundled_migrations

    digest = hashlib.sha256()
    for migration in bundled_migrations():
        digest.update(f"{migration.version}\0{migration.name}\0{migration.sql}\0".encode())
    fingerprint = digest.hexdigest()[:16]
    if is_migrated(data_dir, fingerprint):
        return
    async with direct_connection(url, connect_timeout=connect_timeout) as conn:
        # initdb made this database for mealworker alone: no other program's tables are in it.
        await apply_migrations(conn, prior_schema=None)
    mark_migrated(data_dir, fingerprint)


@asynccontextmanager
async def open_database(
    settings: Settings, *, pool_size: int = 4, keep_open: bool = False
) -> AsyncIterator[Database]:
    """The database the settings select, open for calls; closed on exit.

    The embedded database is migrated on start: a newcomer never has to run ``migrate``.
    ``keep_open`` opens the whole pool up front (a worker), so that no call ever waits for a
    new connection.
    """
    transport = transport_of(settings)
    if transport == "rest":
        rest = await _rest_database(settings).open()
        try:
            yield rest
        finally:
            await rest.close()
        return
    url = await postgres_url(settings)
    if transport == "embedded":
        await _migrate_embedded(
            url, data_dir_of(settings), settings.database_connect_timeout_seconds
        )
    db = await PostgresDatabase(
        url,
        transport=transport,
        min_size=pool_size if keep_open else 1,
        max_size=pool_size,
        connect_timeout=settings.database_connect_timeout_seconds,
    ).open()
    try:
        yield db
    finally:
        await db.close()
