"""Choosing and opening the transport the settings ask for."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from mealplan_cli.config import Settings
from mealplan_cli.db.base import Database, DatabaseUnavailableError
from mealplan_cli.db.embedded import default_data_dir, is_migrated, mark_migrated, start_embedded
from mealplan_cli.db.migrations import apply_migrations, bundled_migrations
from mealplan_cli.db.postgres import PostgresDatabase, redact_url
from mealplan_cli.errors import ConfigurationError

if TYPE_CHECKING:
    from mealplan_cli.db.rest import RestDatabase

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


def data_dir_of(settings: Settings) -> Path:
    return settings.mealworker_data_dir or default_data_dir()


async def postgres_url(settings: Settings, *, rest_advice: str = NEEDS_DIRECT_CONNECTION) -> str:
    """``DATABASE_URL``, or the embedded server's URL (started if it is not running)."""
    transport = transport_of(settings)
    if transport == "postgres":
        assert settings.database_url is not None
        return settings.database_url.get_secret_value()
    if transport == "rest":
        raise ConfigurationError(rest_advice)
    return await start_embedded(data_dir_of(settings))


@asynccontextmanager
async def direct_connection(url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """One autocommit connection (for migrations), with a clear error when it cannot open."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=15)
    except psycopg.OperationalError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DatabaseUnavailableError(f"cannot connect to {redact_url(url)}: {first}") from None
    async with conn:
        yield conn


def _rest_database(settings: Settings) -> RestDatabase:
    from mealplan_cli.db.rest import RestDatabase  # httpx and supabase-py: this transport only

    assert settings.supabase_url is not None
    if settings.supabase_service_role_key is None:
        raise ConfigurationError(
            "SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not: set it to the project's "
            "service role key (or an sb_secret_ key), or set DATABASE_URL instead"
        )
    return RestDatabase(settings.supabase_url, settings.supabase_service_role_key)


async def _migrate_embedded(url: str, data_dir: Path) -> None:
    """Apply the migrations once per server start (and per set of bundled files): the commands
    after the first find them recorded and skip the check."""
    digest = hashlib.sha256()
    for migration in bundled_migrations():
        digest.update(f"{migration.version}\0{migration.name}\0{migration.sql}\0".encode())
    fingerprint = digest.hexdigest()[:16]
    if is_migrated(data_dir, fingerprint):
        return
    async with direct_connection(url) as conn:
        await apply_migrations(conn)
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
        await _migrate_embedded(url, data_dir_of(settings))
    db = await PostgresDatabase(
        url, transport=transport, min_size=pool_size if keep_open else 1, max_size=pool_size
    ).open()
    try:
        yield db
    finally:
        await db.close()
