"""``mealworker work`` as a real process: end to end, signals, crashes, outages, many workers.

The three classic failures of Postgres queues (jobs stuck after a crash, jobs run twice,
shutdowns that lose work) are each provoked here for real and must not happen.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app
from tests.conftest import OPENAI_TEST_KEY
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.postgrest_server import FakePostgrest
from tests.helpers.processes import (
    WorkerProcess,
    _get,
    assert_plans_valid,
    completions_per_job,
    enqueue_plans,
    env_for,
    free_port,
    query,
    statuses,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def test_meal_plans_are_generated_end_to_end_with_openai(
    database_url: str, fake_openai: FakeOpenAI, workers: Callable[..., WorkerProcess]
) -> None:
    enqueue_plans(database_url, 3)
    worker = workers(env_for(database_url, fake_openai), "--until-empty")
    assert worker.wait() == 0, worker.output
    assert_plans_valid(database_url, 3)
    assert fake_openai.calls_by_schema()["PlanOutline"] == 3
    progress = query(database_url, "select progress from public.meal_plans")
    assert all(row["progress"]["stage"] == "done" for row in progress)
    assert "transport postgres" in worker.output
    assert OPENAI_TEST_KEY not in worker.output


def test_sigterm_lets_the_running_job_finish_and_exits_0(
    database_url: str, fake_openai: FakeOpenAI, workers: Callable[..., WorkerProcess]
) -> None:
    fake_openai.time_to_first_token = 1.0
    enqueue_plans(database_url, 1)
    worker = workers(env_for(database_url, fake_openai, SHUTDOWN_GRACE_SECONDS="20"))
    wait_until(lambda: statuses(database_url).get("processing") == 1, what="a claim")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output
    assert statuses(database_url) == {"completed": 1}
    assert_plans_valid(database_url, 1)
    stopped = query(database_url, "select status from public.workers")
    assert [row["status"] for row in stopped] == ["stopped"]


def test_sigterm_past_the_grace_period_releases_the_job(
    database_url: str, fake_openai: FakeOpenAI, workers: Callable[..., WorkerProcess]
) -> None:
    fake_openai.time_to_first_token = 30
    enqueue_plans(database_url, 1)
    worker = workers(env_for(database_url, fake_openai, SHUTDOWN_GRACE_SECONDS="0.5"))
    wait_until(lambda: statuses(database_url).get("processing") == 1, what="a claim")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.output
    (job,) = query(database_url, "select status, attempts from public.background_jobs")
    assert job == {"status": "pending", "attempts": 0}
    assert "released 1 unfinished jobs" in worker.output


def test_a_killed_worker_s_job_is_completed_exactly_once_by_another(
    database_url: str, fake_openai: FakeOpenAI, workers: Callable[..., WorkerProcess]
) -> None:
    fake_openai.time_to_first_token = 1.5
    (job_id,) = enqueue_plans(database_url, 1)
    first = workers(env_for(database_url, fake_openai))
    wait_until(lambda: statuses(database_url).get("processing") == 1, what="a claim")
    first.signal(signal.SIGKILL)
    first.wait()
    fake_openai.time_to_first_token = 0
    second = workers(env_for(database_url, fake_openai))
    wait_until(lambda: statuses(database_url) == {"completed": 1}, timeout=30, what="rescue")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.output
    assert "requeued 1 job whose lease expired" in second.output
    assert completions_per_job(database_url) == {job_id: 1}
    (job,) = query(database_url, "select attempts from public.background_jobs")
    assert job["attempts"] == 2
    assert_plans_valid(database_url, 1)


def test_the_worker_survives_its_connections_being_killed(
    database_url: str, fake_openai: FakeOpenAI, workers: Callable[..., WorkerProcess]
) -> None:
    fake_openai.time_to_first_token = 0.3
    enqueue_plans(database_url, 8)
    worker = workers(env_for(database_url, fake_openai, MAX_CONCURRENT_JOBS="2"), "--until-empty")
    wait_until(lambda: statuses(database_url).get("completed", 0) >= 1, what="progress")
    killed = query(
        database_url,
        "select pg_terminate_backend(pid) as killed from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid()",
    )
    assert killed
    assert worker.wait(90) == 0, worker.output
    outages = worker.output.count("database unavailable (")
    # The kill is noticed: by a call that was in flight (an outage), or by the listener. A pool
    # that replaced its idle connections before any call needed them has nothing to report.
    assert outages or "LISTEN connection lost" in worker.output, worker.output
    assert worker.output.count("database reachable again") == outages  # each outage ends
    assert statuses(database_url) == {"completed": 8}
    assert all(n == 1 for n in completions_per_job(database_url).values())
    assert_plans_valid(database_url, 8)


def test_four_workers_write_each_of_200_plans_exactly_once(
    database_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    enqueue_plans(database_url, 200, {"days": 1, "meals": ["lunch", "dinner"]})
    env = env_for(database_url, PLANNER="catalog", MAX_CONCURRENT_JOBS="8", LOG_LEVEL="WARNING")
    started = [workers(env, "--until-empty") for _ in range(4)]
    for worker in started:
        assert worker.wait(120) == 0, worker.output
    assert statuses(database_url) == {"completed": 200}
    per_job = completions_per_job(database_url)
    assert len(per_job) == 200
    assert set(per_job.values()) == {1}
    claimed_by = query(
        database_url,
        "select count(distinct worker_id) as n from public.background_job_events "
        "where event = 'claimed'",
    )
    assert claimed_by[0]["n"] >= 2
    assert_plans_valid(database_url, 200)


def test_with_only_the_two_supabase_settings_the_worker_runs_over_rest(
    database_url: str, fake_openai: FakeOpenAI, workers: Callable[..., WorkerProcess]
) -> None:
    secret = "sb_secret_worker_5e2c8a1f7b3d"
    enqueue_plans(database_url, 2)
    with FakePostgrest(database_url, secret_keys=[secret]) as postgrest:
        env = env_for(database_url, fake_openai)
        del env["DATABASE_URL"]
        env.update({"SUPABASE_URL": postgrest.base_url, "SUPABASE_SERVICE_ROLE_KEY": secret})
        worker = workers(env)
        wait_until(lambda: statuses(database_url) == {"completed": 2}, what="plans over REST")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output
    assert "transport rest" in worker.output
    assert secret not in worker.output
    assert_plans_valid(database_url, 2)
    assert {r.function for r in postgrest.requests} >= {
        "mealworker_claim_next",
        "mealworker_complete_jobs",
        "mealworker_register_worker",
        "mealworker_stop_worker",
    }


def test_no_secret_reaches_any_log_console_or_json_output(
    database_url: str,
    fake_openai: FakeOpenAI,
    workers: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    """Failing jobs with every secret set: none of them appears anywhere an operator looks."""
    password = "pg-password-3b9f1c"
    url = database_url.replace("postgres@", f"postgres:{password}@", 1)
    secrets = {
        "OPENAI_API_KEY": OPENAI_TEST_KEY,
        "UNSPLASH_ACCESS_KEY": "unsplash-secret-8c2d4e6f",
        "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_leaktest_1a2b3c4d5e",
        "SUPABASE_URL": "http://127.0.0.1:9",
    }
    fake_openai.api_key = "sk-some-other-key"  # every OpenAI call fails with 401
    enqueue_plans(database_url, 2)
    log_dir = tmp_path / "logs"
    env = env_for(url, fake_openai, LOG_DIR=str(log_dir), LOG_LEVEL="DEBUG", **secrets)
    env["OPENAI_API_KEY"] = OPENAI_TEST_KEY
    worker = workers(env, "--until-empty")
    assert worker.wait() == 0, worker.output
    assert statuses(database_url) == {"failed": 2}
    outputs = {
        "console": worker.output,
        "combined.log": (log_dir / "combined.log").read_text(),
        "error.log": (log_dir / "error.log").read_text(),
    }
    runner = CliRunner()
    for command in (["stats", "--json"], ["tail", "--since", "1h", "--no-follow", "--json"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 0, result.output
        outputs[" ".join(command)] = result.output
    assert "OPENAI_API_KEY" in outputs["error.log"]  # the failure is explained...
    for name, text in outputs.items():
        for secret in [password, *secrets.values(), OPENAI_TEST_KEY]:
            if secret.startswith("http"):
                continue
            assert secret not in text, f"{secret} leaked into {name}"
    assert "job=" in outputs["combined.log"]
    assert "attempt=" in outputs["combined.log"]


def test_metrics_and_health_endpoints(
    database_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    port = free_port()
    rows = query(
        database_url,
        "select * from public.mealworker_enqueue_jobs(p_job_type => 'ping', "
        "p_payloads => '[{}, {}, {}]'::jsonb)",
    )
    assert len(rows) == 3
    worker = workers(env_for(database_url, METRICS_PORT=str(port)))
    wait_until(lambda: statuses(database_url) == {"completed": 3}, what="pings")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _get(f"{base}/healthz")[0] == 200, what="healthz")
    status, metrics = _get(f"{base}/metrics")
    assert status == 200
    assert 'mealworker_jobs_completed_total{job_type="ping"} 3' in metrics
    assert "mealworker_pickup_latency_seconds_count 3" in metrics
    assert "mealworker_active_jobs 0" in metrics
    assert _get(f"{base}/nowhere")[0] == 404
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output


def test_tail_shows_a_running_worker_s_events(
    database_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    query(
        database_url,
        "select * from public.mealworker_enqueue_jobs(p_job_type => 'ping', "
        "p_payloads => '[{}, {}]'::jsonb)",
    )
    worker = workers(env_for(database_url, WORKER_ID="tail-test-worker"))
    wait_until(lambda: statuses(database_url) == {"completed": 2}, what="pings")
    result = CliRunner().invoke(
        app, ["tail", "--since", "1m", "--no-follow", "--json"], env={"DATABASE_URL": database_url}
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    done = [e for e in events if e["event"] == "completed"]
    assert len(done) == 2
    assert {e["worker_id"] for e in done} == {"tail-test-worker"}


@pytest.mark.parametrize("command", [["tail"], ["stats", "--watch", "--interval", "0.5"]])
def test_ctrl_c_ends_the_following_commands_with_exit_0(
    database_url: str, command: list[str], tmp_path: Path
) -> None:
    env = env_for(database_url)
    output = (tmp_path / "out.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mealplan_cli", *command], env=env, stdout=output, stderr=output
    )
    log = tmp_path / "out.log"
    try:
        wait_until(
            lambda: "Ctrl-C to stop" in log.read_text() or process.poll() is not None,
            timeout=60,
            what="the ready line",
        )
        assert process.poll() is None, log.read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output.close()
    assert "Traceback" not in (tmp_path / "out.log").read_text()
