"""``mealworker doctor`` against real servers: a database, the OpenAI and Unsplash fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
from pydantic import SecretStr
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.ops.doctor import Verdict, listen_check
from mealplan_cli.settings.config import Settings
from tests.conftest import OPENAI_TEST_KEY, UNSPLASH_TEST_KEY
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.postgrest_server import FakePostgrest
from tests.fakes.unsplash_server import FakeUnsplash

runner = CliRunner()


def full_env(database_url: str, openai: FakeOpenAI, unsplash: FakeUnsplash) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "OPENAI_API_KEY": OPENAI_TEST_KEY,
        "OPENAI_BASE_URL": openai.base_url,
        "OPENAI_MODEL": "gpt-4o-mini",
        "UNSPLASH_ACCESS_KEY": UNSPLASH_TEST_KEY,
        "UNSPLASH_API_URL": unsplash.base_url,
    }


def verdicts(output: str) -> dict[str, str]:
    return {check["name"]: check["verdict"] for check in json.loads(output)}


def test_everything_ok_exits_0_and_shows_no_secret(
    database_url: str, fake_openai: FakeOpenAI, fake_unsplash: FakeUnsplash
) -> None:
    env = full_env(database_url, fake_openai, fake_unsplash)
    result = runner.invoke(app, ["doctor"], env=env)
    assert result.exit_code == 0, result.output
    for name in ("database", "migrations", "row level security", "openai", "unsplash"):
        assert f"ok  {name}:" in result.stdout
    assert "requests left this hour" in result.stdout
    for secret in (OPENAI_TEST_KEY, UNSPLASH_TEST_KEY):
        assert secret not in result.output


def test_a_refused_openai_key_or_unknown_model_fails(
    database_url: str, fake_openai: FakeOpenAI, fake_unsplash: FakeUnsplash
) -> None:
    env = full_env(database_url, fake_openai, fake_unsplash)
    fake_openai.api_key = "sk-another"
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    assert result.exit_code == 1
    assert verdicts(result.stdout)["openai"] == "fail"
    fake_openai.api_key = OPENAI_TEST_KEY
    result = runner.invoke(app, ["doctor"], env={**env, "OPENAI_MODEL": "gpt-unknown"})
    assert result.exit_code == 1
    assert "model 'gpt-unknown' not available" in result.stdout


def test_a_refused_unsplash_key_fails_and_a_low_quota_warns(
    database_url: str, fake_openai: FakeOpenAI, fake_unsplash: FakeUnsplash
) -> None:
    env = full_env(database_url, fake_openai, fake_unsplash)
    fake_unsplash.remaining = 3
    assert verdicts(runner.invoke(app, ["doctor", "--json"], env=env).stdout)["unsplash"] == "warn"
    fake_unsplash.access_key = "other"
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    assert result.exit_code == 1
    assert verdicts(result.stdout)["unsplash"] == "fail"


def test_an_unreachable_database_fails() -> None:
    result = runner.invoke(
        app, ["doctor"], env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres"}
    )
    assert result.exit_code == 1
    assert "fail  database: cannot connect" in result.stdout


def test_over_rest_migrations_and_wake_ups_are_warnings(database_url: str) -> None:
    with FakePostgrest(database_url) as server:
        env = {
            "SUPABASE_URL": server.base_url,
            "SUPABASE_SERVICE_ROLE_KEY": server.service_role_key,
        }
        result = runner.invoke(app, ["doctor", "--json"], env=env)
    assert result.exit_code == 0, result.output
    found = verdicts(result.stdout)
    assert (found["database"], found["migrations"], found["wake-ups"]) == ("ok", "warn", "warn")


def test_the_transaction_pooler_is_detected() -> None:
    url = "postgresql://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres"
    check = listen_check(Settings(database_url=SecretStr(url)))
    assert check.verdict is Verdict.warn
    assert "transaction pooler" in check.detail


def test_roundtrip_needs_a_running_worker(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    result = runner.invoke(app, ["doctor", "--roundtrip", "--timeout", "1", "--json"], env=env)
    assert result.exit_code == 1
    assert verdicts(result.stdout)["roundtrip"] == "fail"
    worker_env = {k: v for k, v in os.environ.items() if k.upper() != "DATABASE_URL"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "mealplan_cli", "work", "--poll-interval", "100"],
        env={**worker_env, **env, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = runner.invoke(app, ["doctor", "--roundtrip", "--timeout", "20"], env=env)
    finally:
        worker.terminate()
        worker.wait(30)
    assert result.exit_code == 0, result.output
    assert "ok  roundtrip: ping job" in result.stdout


def test_json_lists_every_check(database_url: str) -> None:
    result = runner.invoke(app, ["doctor", "--json"], env={"DATABASE_URL": database_url})
    names = [check["name"] for check in json.loads(result.stdout)]
    assert names[:3] == ["settings", "transport", "database"]
    assert names.index("wake-ups") > names.index("row level security")


def finished_jobs(database_url: str, status: str, count: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("set local session_replication_role = replica")  # no events: just rows
        conn.execute(
            "insert into public.background_jobs (job_type, payload, status, finished_at)"
            " select 'ping', '{}', %s, now() - interval '40 days' from generate_series(1, %s)",
            (status, count),
        )


def test_a_pile_of_finished_jobs_warns_until_pruned(database_url: str) -> None:
    finished_jobs(database_url, "completed", 100_001)
    env = {"DATABASE_URL": database_url}

    result = runner.invoke(app, ["doctor"], env=env)
    assert result.exit_code == 0, result.output  # a warning, not a failure
    assert "warn  history: 100,001 finished jobs kept" in result.stdout
    assert "mealworker prune" in result.stdout
    assert "--include-failed" not in result.stdout

    assert runner.invoke(app, ["prune"], env=env).exit_code == 0
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    assert verdicts(result.stdout)["history"] == "ok"


def test_a_pile_of_failed_jobs_names_the_option_that_prunes_them(database_url: str) -> None:
    """``prune`` keeps failed jobs by default: the advice must say how to delete them, or the
    warning would outlive every nightly prune."""
    finished_jobs(database_url, "failed", 100_001)
    env = {"DATABASE_URL": database_url}

    result = runner.invoke(app, ["doctor", "--json"], env=env)
    (history,) = [c for c in json.loads(result.stdout) if c["name"] == "history"]
    assert history["detail"] == "100,001 finished jobs kept, 100,001 of them failed"
    assert "`--include-failed` deletes old failed ones too" in history["advice"]

    assert runner.invoke(app, ["prune"], env=env).exit_code == 0
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    assert verdicts(result.stdout)["history"] == "warn"
    assert runner.invoke(app, ["prune", "--include-failed"], env=env).exit_code == 0
    result = runner.invoke(app, ["doctor", "--json"], env=env)
    assert verdicts(result.stdout)["history"] == "ok"
