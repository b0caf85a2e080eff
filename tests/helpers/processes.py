"""Worker and CLI processes spawned for real, with an environment free of the developer's
settings, and the polling and queries that watch what they do to the database.

The ``workers`` fixture is registered for every test module in ``tests/conftest.py``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from mealplan_cli.mealplans.generation.models import MealPlan
from mealplan_cli.settings.config import Settings
from tests.conftest import OPENAI_TEST_KEY
from tests.fakes.openai_server import FakeOpenAI

REQUEST = {"days": 2, "meals": ["breakfast", "lunch", "dinner"], "calories": 2000}


def clean_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env["PYTHONUNBUFFERED"] = "1"
    return env


_SETTING_NAMES = {name.upper() for name in Settings.model_fields}


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mealplan_cli", "work", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], *args: str) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def env_for(database_url: str, fake: FakeOpenAI | None = None, **extra: str) -> dict[str, str]:
    env = clean_environment()
    env.update(
        {
            "DATABASE_URL": database_url,
            "POLL_INTERVAL_MS": "100",
            "LEASE_SECONDS": "3",
            "STALE_SWEEP_SECONDS": "1",
            "LOG_LEVEL": "INFO",
        }
    )
    if fake is not None:
        env.update(
            {
                "OPENAI_API_KEY": OPENAI_TEST_KEY,
                "OPENAI_BASE_URL": fake.base_url,
                "OPENAI_MODEL": "gpt-4o-mini",
            }
        )
    env.update(extra)
    return env


def query(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def enqueue_plans(url: str, count: int, request: dict[str, Any] | None = None) -> list[int]:
    rows = []
    for _ in range(count):
        rows += query(
            url,
            "select job_id from public.mealworker_enqueue_meal_plan(p_request => %s::jsonb)",
            json.dumps(request or REQUEST),
        )
    return [int(row["job_id"]) for row in rows]


def wait_until(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def statuses(url: str) -> dict[str, int]:
    rows = query(url, "select status, count(*) as n from public.background_jobs group by 1")
    return {row["status"]: int(row["n"]) for row in rows}


def completions_per_job(url: str) -> dict[int, int]:
    rows = query(
        url,
        "select job_id, count(*) as n from public.background_job_events "
        "where event = 'completed' group by 1",
    )
    return {int(row["job_id"]): int(row["n"]) for row in rows}


def assert_plans_valid(url: str, count: int) -> None:
    rows = query(url, "select status, plan from public.meal_plans")
    assert len(rows) == count
    for row in rows:
        assert row["status"] == "completed"
        MealPlan.model_validate(row["plan"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return 0, ""
    return response.status_code, response.text
