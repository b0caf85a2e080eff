"""The queue over each transport (direct PostgreSQL, REST with the service-role JWT, REST
with an ``sb_secret_`` key), so one test body checks all three.

The ``open_db`` fixture is registered for every test module in ``tests/conftest.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from mealplan_cli.core.db.base import (
    Database,
)
from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.db.rest import RestDatabase
from mealplan_cli.core.queue import Queue
from mealplan_cli.settings.config import Settings
from tests.fakes.postgrest_server import FakePostgrest

SECRET_KEY = "sb_secret_test_4f1d6a0c9b2e7d3f"


Opener = Callable[[], Awaitable[Database]]


@pytest.fixture(
    params=[
        "postgres",
        "rest",
        # The same REST path with another key kind: the whole suite runs it, the quick loop not.
        pytest.param("rest-sb-secret", marks=pytest.mark.slow),
    ]
)
def open_db(request: pytest.FixtureRequest, database_url: str) -> Iterator[Opener]:
    if request.param == "postgres":
        yield lambda: PostgresDatabase(database_url).open()
        return
    server = FakePostgrest(database_url, secret_keys=[SECRET_KEY])
    with server:
        key = server.service_role_key if request.param == "rest" else SECRET_KEY
        yield lambda: RestDatabase(server.base_url, SecretStr(key)).open()


@pytest.fixture(params=["postgres", "rest"])
def db_settings(request: pytest.FixtureRequest, database_url: str) -> Iterator[Settings]:
    """Settings that reach the test database directly, or through PostgREST with the
    service-role key."""
    if request.param == "postgres":
        yield Settings(database_url=SecretStr(database_url))
        return
    with FakePostgrest(database_url) as server:
        yield Settings(
            supabase_url=server.base_url,
            supabase_service_role_key=SecretStr(server.service_role_key),
        )


@asynccontextmanager
async def queue_over(open_db: Opener) -> AsyncIterator[Queue]:
    db = await open_db()
    try:
        yield Queue(db)
    finally:
        await db.close()


def run(open_db: Opener, body: Callable[[Queue], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with queue_over(open_db) as queue:
            return await body(queue)

    return asyncio.run(main())
