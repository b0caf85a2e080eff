"""A running worker whose database becomes unreachable: /healthz says so at once, the log
says so while it lasts and when it ends, and SIGTERM still exits 0."""

from __future__ import annotations

import signal
from collections.abc import Callable
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.helpers import pg
from tests.helpers.processes import WorkerProcess, _get, env_for, free_port, query, wait_until

pytestmark = pytest.mark.timeout(120)


def execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.encode())


def test_healthz_is_503_as_soon_as_the_database_is_unreachable(
    database_url: str,
    workers: Callable[..., WorkerProcess],
) -> None:
    port = free_port()
    healthz = f"http://127.0.0.1:{port}/healthz"
    # A long lease: "no answer for a lease" would take a minute; unreachable must show at once.
    worker = workers(env_for(database_url, METRICS_PORT=str(port), LEASE_SECONDS="60"))
    wait_until(lambda: _get(healthz)[0] == 200, 30, "healthy")
    name = urlsplit(database_url).path.lstrip("/")
    admin = pg.with_database(database_url, "postgres")
    execute(admin, f'alter database "{name}" allow_connections false')
    try:
        query(
            admin,
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s",
            name,
        )
        wait_until(lambda: _get(healthz)[0] == 503, 20, "503 from /healthz")
        assert "database unreachable" in _get(healthz)[1]
        wait_until(lambda: "database unavailable (" in worker.output, 20, "the outage logged")
    finally:
        execute(admin, f'alter database "{name}" allow_connections true')
    wait_until(lambda: _get(healthz)[0] == 200, 30, "healthy again")
    wait_until(lambda: "database reachable again" in worker.output, 20, "the recovery logged")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output
