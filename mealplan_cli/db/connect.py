"""Choosing and opening the transport the settings ask for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg

from mealplan_cli.config import Settings
from mealplan_cli.db.base import Database
from mealplan_cli.db.embedded import default_data_dir, start_embedded
from mealplan_cli.db.migrations import apply_migrations
from mealplan_cli.db.postgres import PostgresDatabase, connect
from mealplan_cli.db.rest import RestDatabase
from mealplan_cli.errors import ConfigurationError

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
async def direct_connection(
    url: str, *, connect_timeout: float = 5
) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """One autocommit connection (for migrations), with a clear error when it cannot open."""
    conn = await connect(url, connect_timeout=connect_timeout, autocommit=True)
    async with conn:
        yield conn


def _rest_database(settings: Settings) -> RestDatabase:
    assert settings.supabase_url is not None
    if settings.supabase_service_role_key is None:
        raise ConfigurationError(
            "SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not: set it to the project's "
            "service role key (or an sb_secret_ key), or set DATABASE_URL instead"
        )
    return RestDatabase(settings.supabase_url, settings.supabase_service_role_key)


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
        async with direct_connection(
            url, connect_timeout=settings.database_connect_timeout_seconds
        ) as conn:
            await apply_migrations(conn)
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
