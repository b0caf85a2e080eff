"""requeue, cancel, stats and tail through Typer's runner, over psycopg and over REST."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app

runner = CliRunner()


def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def sql(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def enqueue_ping(url: str, count: int = 1) -> list[int]:
    rows = sql(
        url,
        "select * from public.mealworker_enqueue_jobs("
        "p_job_type => 'ping', p_payloads => %s::jsonb)",
        json.dumps([{}] * count),
    )
    return [int(str(row[0])) for row in rows]


def claim_all(url: str) -> None:
    sql(
        url,
        "select * from public.mealworker_claim_jobs("
        "'w1', array['ping', 'generate_meal_plan'], 100)",
    )


def test_requeue_stale_is_silent_unless_it_changed_something(
    env: dict[str, str], database_url: str
) -> None:
    assert cli(env, "requeue", "--stale") == (0, "", "")
    (job_id,) = enqueue_ping(database_url)
    claim_all(database_url)
    sql(database_url, "update public.background_jobs set lease_expires_at = now()")
    code, out, _ = cli(env, "requeue", "--stale")
    assert code == 0
    assert f"job {job_id}: lease expired, now pending" in out


def test_requeue_failed_with_filters_and_a_dry_run(env: dict[str, str], database_url: str) -> None:
    first, _ = enqueue_ping(database_url, 2)
    sql(
        database_url,
        "update public.background_jobs set status = 'failed', attempts = 5, last_error = "
        "case when id = %s then 'boom: quota' else 'other' end",
        first,
    )
    code, out, _ = cli(
        env, "requeue", "--failed", "--error-contains", "BOOM", "--dry-run", "--json"
    )
    assert code == 0
    assert [row["job_id"] for row in json.loads(out)] == [first]
    assert sql(database_url, "select status from public.background_jobs where id = %s", first) == [
        ("failed",)
    ]
    code, out, _ = cli(
        env, "requeue", "--failed", "--since", "1h", "--type", "ping", "--reset-attempts"
    )
    assert code == 0
    assert "requeued 2 jobs" in out
    assert sql(database_url, "select status, attempts from public.background_jobs order by id") == [
        ("pending", 0),
        ("pending", 0),
    ]


def test_requeue_needs_exactly_one_selection(env: dict[str, str]) -> None:
    code, _, err = cli(env, "requeue", "--stale", "--failed")
    assert code == 2
    assert "exactly one of --stale, --failed or job ids" in err


@pytest.mark.parametrize("command", ["requeue --failed", "tail --no-follow"])
def test_a_mistyped_since_names_its_option(env: dict[str, str], command: str) -> None:
    code, _, err = cli(env, *command.split(), "--since", "1 hour")
    assert code == 2
    assert "Invalid value for '--since': '1 hour' is not a duration like 90s" in err


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("requeue --failed", "--since"),
        ("tail --no-follow", "--since"),
        ("prune --dry-run", "--older-than"),
        ("prune --dry-run", "--events-older-than"),
    ],
)
@pytest.mark.parametrize(
    ("duration", "why"),
    [("99999999d", "reaches back before the year 1"), ("9999999999999d", "is too long a duration")],
)
def test_a_duration_past_the_calendar_names_its_option(
    env: dict[str, str], command: str, option: str, duration: str, why: str
) -> None:
    code, _, err = cli(env, *command.split(), option, duration)
    assert code == 2
    assert f"Invalid value for '{option}': '{duration}' {why}" in err
    assert "Traceback" not in err


def test_cancel_pending_processing_and_unknown(env: dict[str, str], database_url: str) -> None:
    running, waiting = enqueue_ping(database_url, 2)
    sql(database_url, "select * from public.mealworker_claim_jobs('w1', array['ping'], 1)")
    code, out, _ = cli(env, "cancel", str(running), str(waiting))
    assert code == 0
    assert f"job {running}: cancel requested; its worker stops it" in out
    assert f"job {waiting}: cancelled" in out
    code, _, err = cli(env, "cancel", "424242")
    assert code == 1
    assert "no job 424242" in err


def test_stats_tables_json_and_thresholds(env: dict[str, str], database_url: str) -> None:
    enqueue_ping(database_url, 3)
    sql(database_url, "update public.background_jobs set run_at = now() - interval '10 minutes'")
    code, out, _ = cli(env, "stats")
    assert code == 0
    assert "lag (oldest runnable pending)" in out
    code, out, _ = cli(env, "stats", "--json")
    data = json.loads(out)
    assert data["by_status"]["pending"] == 3
    assert data["metrics"]["lag"] >= 600
    code, _, err = cli(env, "stats", "--fail-if", "lag>300", "--fail-if", "failure_rate>0.5")
    assert code == 1
    assert "threshold crossed: lag>300" in err
    assert cli(env, "stats", "--fail-if", "pending>10")[0] == 0
    code, _, err = cli(env, "stats", "--fail-if", "mood>3")
    assert code == 2  # a typo in the monitor's own command is not an alert
    assert "write METRIC>VALUE" in err
    assert len(err.strip().splitlines()) == 1


def test_tail_shows_history_then_stops_without_follow(
    env: dict[str, str], database_url: str
) -> None:
    first, second = enqueue_ping(database_url, 2)
    claim_all(database_url)
    code, out, _ = cli(env, "tail", "--since", "10m", "--no-follow")
    assert code == 0
    assert out.count("enqueued") == 2
    assert out.count("claimed") == 2
    code, out, _ = cli(env, "tail", "--since", "10m", "--no-follow", "--json", "--event", "claimed")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["job_id"] for line in lines] == [first, second]
    code, out, _ = cli(env, "tail", "--since", "10m", "--no-follow", "--job", str(second))
    assert f"job {first} " not in out


@pytest.mark.timeout(120)
def test_the_operator_commands_work_on_the_embedded_database(embedded_data_dir: Path) -> None:
    env = {"MEALWORKER_DATA_DIR": str(embedded_data_dir)}
    code, out, err = cli(env, "enqueue", "--type", "ping", "--count", "2", "--json")
    assert code == 0, err
    first, _ = (item["job_id"] for item in json.loads(out))
    assert cli(env, "cancel", str(first))[1].strip() == f"job {first}: cancelled"
    assert cli(env, "requeue", str(first))[0] == 0
    assert cli(env, "requeue", "--stale") == (0, "", "")
    code, out, _ = cli(env, "stats", "--json")
    assert json.loads(out)["by_status"]["pending"] == 2
    code, out, _ = cli(env, "tail", "--since", "5m", "--no-follow", "--json")
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert events.count("enqueued") == 2
    assert "cancelled" in events
    assert "requeued" in events
