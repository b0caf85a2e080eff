"""Shared fixtures: isolation from the developer's settings, and the loopback fakes."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import SecretStr

from mealplan_cli.core.db.embedded import stop_server
from mealplan_cli.settings.config import Settings
from tests.fakes.meal_responder import CatalogResponder
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.postgrest_server import FakePostgrest
from tests.fakes.unsplash_server import FakeUnsplash
from tests.helpers import pg

# Helper modules that define fixtures used by several test modules: registered here once, so
# no test module imports a fixture (or anything else) from another.
pytest_plugins = ["tests.helpers.processes", "tests.helpers.transports"]

OPENAI_TEST_KEY = "sk-test-4f9c2b7e1d"
UNSPLASH_TEST_KEY = "unsplash-test-7a1e5c"


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may see the developer's environment or ``.env``, nor reach the internet, nor
    the size of the terminal pytest runs in (pytest-xdist's workers have COLUMNS=80: output
    meant for a pipe would wrap there and nowhere else)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name in (
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "COLUMNS",
        "LINES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(CatalogResponder(), api_key=OPENAI_TEST_KEY) as fake:
        yield fake


@pytest.fixture
def fake_unsplash() -> Iterator[FakeUnsplash]:
    with FakeUnsplash(access_key=UNSPLASH_TEST_KEY) as fake:
        yield fake


def openai_settings(fake: FakeOpenAI, **extra: Any) -> Settings:
    """Settings for the OpenAI planner against ``fake``, with quick retries."""
    values: dict[str, Any] = {
        "planner": "openai",
        "openai_api_key": SecretStr(OPENAI_TEST_KEY),
        "openai_base_url": fake.base_url,
        "openai_model": "gpt-4o-mini",
        "openai_timeout_seconds": 5.0,
        **extra,
    }
    return Settings(**values)


def unsplash_settings(fake: FakeUnsplash, **extra: Any) -> dict[str, Any]:
    return {
        "unsplash_access_key": SecretStr(UNSPLASH_TEST_KEY),
        "unsplash_api_url": fake.base_url,
        **extra,
    }


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A superuser URL of the test server (see ``tests/helpers/pg.py``)."""
    url, handle = pg.start_server()
    yield url
    del handle


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> Iterator[str]:
    name = pg.create_template(pg_server_url)
    yield name
    pg.drop(pg_server_url, name)


@pytest.fixture(scope="session")
def pg_pool(pg_server_url: str, pg_template: str) -> Iterator[pg.DatabasePool]:
    pool = pg.DatabasePool(pg_server_url, pg_template)
    yield pool
    pool.close()


@pytest.fixture
def database_url(pg_server_url: str, pg_pool: pg.DatabasePool) -> Iterator[str]:
    """A migrated database for one test, as a fresh clone of the template would be."""
    name = pg_pool.take()
    yield pg.with_database(pg_server_url, name)
    pg_pool.give_back(name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An autocommit connection to the test's database, rows as dicts."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as c:
        yield c


def postgres_processes_under(folder: Path) -> list[int]:
    """Pids of PostgreSQL servers whose command line names a path under ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "postgres" in arguments and str(folder) in arguments:
            found.append(int(entry.name))
    return found


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A ``MEALWORKER_DATA_DIR`` whose embedded server is stopped (and checked gone) after the
    test, since the server outlives the commands that start it.

    Not under pytest's ``tmp_path``: as root the embedded server runs as its own user, which must
    be able to reach the folder (pgserver opens up the folders it creates, not pytest's).
    """
    folder = Path(tempfile.mkdtemp(prefix="mealworker-embedded-"))
    try:
        yield folder / "data"
    finally:
        stop_server(folder / "data")
        leaked = postgres_processes_under(folder)
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
        assert not leaked, f"PostgreSQL servers left running under {folder}: {leaked}"


@pytest.fixture(params=["postgres", "rest"])
def env(request: pytest.FixtureRequest, database_url: str) -> Iterator[dict[str, str]]:
    """A CLI run's environment over each transport: DATABASE_URL, or the two Supabase
    settings of a PostgREST-compatible server on the same database."""
    if request.param == "postgres":
        yield {"DATABASE_URL": database_url}
        return
    with FakePostgrest(database_url) as server:
        yield {
            "SUPABASE_URL": server.base_url,
            "SUPABASE_SERVICE_ROLE_KEY": server.service_role_key,
        }


PROCESS_TESTS = Path(__file__).parent / "process"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under ``tests/process`` spawns programs, so it is slow: ``pytest -m "not slow"``
    leaves them out of the quick loop, and plain ``pytest`` (CI) still runs them."""
    for item in items:
        if item.path.is_relative_to(PROCESS_TESTS):
            item.add_marker(pytest.mark.slow)
