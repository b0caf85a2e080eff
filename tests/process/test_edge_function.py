"""The request-meal-plan Edge Function, under Node, against FakePostgrest on a migrated database.

The function's own tests (``supabase/functions/request-meal-plan/handler.test.ts``, Node's test
runner with ``tsx``) need a PostgREST-compatible server; this test gives them one and checks that
every one of them ran and passed. ``node_modules`` is installed with ``npm ci`` when missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.postgrest_server import FakePostgrest, make_jwt

pytestmark = pytest.mark.timeout(180)

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "supabase" / "functions"
USER_A = uuid.UUID("0b6f3c1e-8a2d-4f7b-9c5e-1d3a7e9b2c40")
USER_B = uuid.UUID("6d2e9a4f-1c7b-4e83-a5f0-3b8c2d1e7f96")
# The cases in handler.test.ts: all of them must run.
EXPECTED_TESTS = 13
NPM_CI_TIMEOUT = 120
NPM_TEST_TIMEOUT = 150
SUMMARY_LINE = re.compile(
    r"^\s*(?:#|ℹ)\s*(tests|pass|fail|cancelled|skipped|todo)\s+(\d+)\s*$", re.MULTILINE
)


@pytest.fixture
def npm() -> str:
    """The npm executable, with the functions' node_modules installed (``npm ci`` if missing).

    Skips the test when Node or npm is not installed.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        pytest.skip(f"{missing} not on PATH: the Edge Function's tests need Node.js >= 20.6")
    if not (FUNCTIONS_DIR / "node_modules").is_dir():
        _npm_ci(npm)
    return npm


def _npm_ci(npm: str) -> None:
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=FUNCTIONS_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"


def _bad_jwt(user_id: uuid.UUID) -> str:
    """A well-formed user token signed with a secret the server does not know."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 3600,
    }
    return make_jwt(claims, "not-this-projects-secret-but-32-characters-long")


def _summary(output: str) -> dict[str, int]:
    """The counts Node's test runner prints at the end (TAP ``# pass 3``, spec ``ℹ pass 3``)."""
    return {name: int(count) for name, count in SUMMARY_LINE.findall(output)}


@pytest.fixture
def fake_postgrest(database_url: str) -> Iterator[FakePostgrest]:
    with FakePostgrest(database_url) as fake:
        yield fake


def test_edge_function_node_tests_pass_against_the_data_api(
    npm: str, fake_postgrest: FakePostgrest
) -> None:
    user_a, user_b = fake_postgrest.user_jwt(USER_A), fake_postgrest.user_jwt(USER_B)
    env = {
        **os.environ,
        "SUPABASE_URL": fake_postgrest.base_url,
        "SUPABASE_ANON_KEY": fake_postgrest.anon_key,
        "USER_JWT_A": user_a,
        "USER_JWT_B": user_b,
        "BAD_JWT": _bad_jwt(USER_A),
        "NO_COLOR": "1",
    }
    env.pop("NODE_OPTIONS", None)
    env.pop("NODE_TEST_CONTEXT", None)

    result = subprocess.run(
        [npm, "test"],
        cwd=FUNCTIONS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=NPM_TEST_TIMEOUT,
        check=False,
    )
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output

    counts = _summary(result.stdout)
    assert counts.get("tests") == EXPECTED_TESTS, output
    assert counts.get("pass") == EXPECTED_TESTS, output
    for outcome in ("fail", "cancelled", "skipped", "todo"):
        assert counts.get(outcome) == 0, f"{outcome}: {counts.get(outcome)}\n{output}"

    # The tests really went through the Data API, as signed-in users and (once) as anon.
    calls = fake_postgrest.calls()
    assert calls["request_meal_plan"] >= 10, calls
    assert calls["cancel_meal_plan"] >= 1, calls
    served_as = {r.role for r in fake_postgrest.requests_for("request_meal_plan")}
    assert served_as <= {"authenticated", "anon", None}, served_as
    assert "authenticated" in served_as
    for token in (user_a, user_b):
        assert token not in result.stdout
