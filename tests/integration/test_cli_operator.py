"""requeue, cancel, stats and tail through Typer's runner, over psycopg and over REST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import cli, sql

# Every operator command over both transports, end to end: about a minute.
pytestmark = pytest.mark.slow


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
    assert "exactly one of --stale, --failed, --waiting or job ids" in " ".join(err.split())


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


# --- dry runs change nothing, and say exactly what the real run would -------------------------

TABLES = ("background_jobs", "background_job_events", "meal_plans", "workers")


def dump(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the queue's tables as text, with its ``xmin``: a row rewritten with the
    same values differs too."""
    return {
        table: sql(url, f"select xmin::text, t::text from public.{table} t order by 2")
        for table in TABLES
    }


def queue_in_every_state(env: dict[str, str], url: str) -> dict[str, int]:
    """A pending, a stale (lease expired), a failed and an old completed job, one of them a
    meal plan's."""
    code, out, err = cli(env, "enqueue", "--days", "1", "--json")
    assert code == 0, err
    plan_job = int(json.loads(out)[0]["job_id"])
    pending, stale, failed, completed = enqueue_ping(url, 4)
    for job_id in (plan_job, stale):
        sql(url, "select * from public.mealworker_claim_job(%s, 'w1', 60)", job_id)
    sql(
        url,
        "update public.background_jobs set lease_expires_at = now() - interval '1 minute' "
        "where status = 'processing'",
    )
    sql(
        url,
        "update public.background_jobs set status = 'failed', attempts = 5, "
        "last_error = 'boom' where id = %s",
        failed,
    )
    sql(
        url,
        "update public.background_jobs set status = 'completed', "
        "finished_at = now() - interval '90 days' where id = %s",
        completed,
    )
    sql(url, "update public.background_job_events set created_at = now() - interval '90 days'")
    return {"plan": plan_job, "pending": pending, "stale": stale, "failed": failed}


DRY_RUNS = [
    ["requeue", "--stale"],
    ["requeue", "--failed"],
    ["requeue", "--failed", "--reset-attempts"],
    ["requeue", "JOB"],
    ["prune", "--older-than", "30d"],
    ["prune", "--older-than", "30d", "--include-failed"],
]


@pytest.mark.parametrize("command", DRY_RUNS, ids=" ".join)
def test_a_dry_run_changes_nothing_and_shows_what_the_run_would_do(
    env: dict[str, str], database_url: str, command: list[str]
) -> None:
    jobs = queue_in_every_state(env, database_url)
    args = [str(jobs["failed"]) if arg == "JOB" else arg for arg in command]
    before = dump(database_url)
    code, planned, err = cli(env, *args, "--dry-run", "--json")
    assert code == 0, err
    assert dump(database_url) == before  # not one row written, not even rewritten as it was
    code, done, err = cli(env, *args, "--json")
    assert code == 0, err
    assert dump(database_url) != before  # the real run did change something
    planned_data, done_data = json.loads(planned), json.loads(done)
    if isinstance(planned_data, dict):  # prune: counts
        assert planned_data["dry_run"] is True
        moments = ("dry_run", "finished_before", "events_before")  # each run's own now
        planned_data = {k: v for k, v in planned_data.items() if k not in moments}
        done_data = {k: v for k, v in done_data.items() if k not in moments}
        assert planned_data["jobs"] >= 1
    else:
        for row in planned_data + done_data:
            row.pop("dry_run", None)
        assert planned_data
    assert planned_data == done_data


def test_requeue_stale_dry_run_says_would(env: dict[str, str], database_url: str) -> None:
    jobs = queue_in_every_state(env, database_url)
    code, out, _ = cli(env, "requeue", "--stale", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        f"job {jobs['plan']}: lease expired, would be pending",
        f"job {jobs['stale']}: lease expired, would be pending",
    ]
    sql(database_url, "update public.background_jobs set lease_expires_at = null")
    code, out, _ = cli(env, "requeue", "--stale", "--dry-run")
    assert (code, out.strip()) == (0, "would requeue no job: no lease has expired")


# --- the app's ids, unknown ids, ids past bigint ------------------------------------------------


def meal_plan(env: dict[str, str]) -> tuple[int, str]:
    code, out, err = cli(env, "enqueue", "--days", "1", "--json")
    assert code == 0, err
    (queued,) = json.loads(out)
    return int(queued["job_id"]), str(queued["meal_plan_id"])


def test_cancel_requeue_and_tail_take_the_meal_plan_id(
    env: dict[str, str], database_url: str
) -> None:
    job_id, plan_id = meal_plan(env)
    code, out, err = cli(env, "cancel", plan_id)
    assert (code, out.strip()) == (0, f"job {job_id}: cancelled"), err
    code, out, err = cli(env, "requeue", plan_id, "--json")
    assert code == 0, err
    assert [row["job_id"] for row in json.loads(out)] == [job_id]
    code, out, _ = cli(env, "tail", "--no-follow", "--job", plan_id, "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert {event["job_id"] for event in events} == {job_id}
    assert [event["event"] for event in events] == ["enqueued", "cancelled", "requeued"]


UNKNOWN_PLAN = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["requeue", "999999"], "no job 999999"),
        (["cancel", "999999"], "no job 999999"),
        (["requeue", UNKNOWN_PLAN], f"no job for meal plan {UNKNOWN_PLAN}"),
        (["cancel", UNKNOWN_PLAN], f"no job for meal plan {UNKNOWN_PLAN}"),
        (["tail", "--no-follow", "--job", UNKNOWN_PLAN], f"no job for meal plan {UNKNOWN_PLAN}"),
        (["tail", "--no-follow", "--job", "999999"], "no job 999999"),
        (["run-job", UNKNOWN_PLAN], f"no job for meal plan {UNKNOWN_PLAN}"),
        (["run-job", "999999"], "no job 999999"),
    ],
)
def test_an_unknown_id_exits_1_everywhere(
    env: dict[str, str], command: list[str], message: str
) -> None:
    code, out, err = cli(env, *command)
    assert code == 1
    assert err.strip() == f"error: {message}"
    assert out == "", "nothing was done, so nothing is reported as done"


def test_requeue_by_id_says_why_a_job_was_not_requeued(
    env: dict[str, str], database_url: str
) -> None:
    running, waiting = enqueue_ping(database_url, 2)
    sql(database_url, "select * from public.mealworker_claim_job(%s, 'w1', 60)", running)
    code, _, err = cli(env, "requeue", str(running), str(waiting), "999999")
    assert code == 1
    assert f"job {running} was not requeued: it is being processed by w1" in err
    assert "no job 999999" in err


@pytest.mark.parametrize(
    "command",
    [["cancel"], ["requeue"], ["run-job"], ["tail", "--no-follow", "--job"]],
    ids=" ".join,
)
@pytest.mark.parametrize("job", ["9223372036854775808", "99999999999999999999999", "0", "12a"])
def test_an_id_out_of_range_or_malformed_is_one_line_before_any_connection(
    command: list[str], job: str
) -> None:
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}  # never reached
    code, _, err = cli(env, *command, job)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    assert "out of range" in err or "neither a job id" in err
    assert "cannot connect" not in err


# --- tail, stats ---------------------------------------------------------------------------------


def test_tail_without_since_shows_the_last_events(env: dict[str, str], database_url: str) -> None:
    ids = enqueue_ping(database_url, 30)
    code, out, _ = cli(env, "tail", "--no-follow", "--json")
    assert code == 0
    assert [json.loads(line)["job_id"] for line in out.splitlines()] == ids[-20:]
    code, out, _ = cli(env, "tail", "--no-follow", "--last", "3")
    assert [line.split()[2] for line in out.splitlines()] == [str(i) for i in ids[-3:]]
    claim_all(database_url)
    code, out, _ = cli(env, "tail", "--no-follow", "--event", "enqueued", "--last", "2", "--json")
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["enqueued"] * 2


def test_stats_names_the_database_it_read_masked(database_url: str) -> None:
    url = database_url.replace("postgres@", "postgres:Sekr3t-pass@", 1)
    assert "Sekr3t-pass" in url
    code, out, err = cli({"DATABASE_URL": url}, "stats")
    assert code == 0, err
    assert f"Queue in {url.replace('Sekr3t-pass', '***')}" in out
    code, out, _ = cli({"DATABASE_URL": url}, "stats", "--json")
    assert json.loads(out)["database"] == url.replace("Sekr3t-pass", "***")
    assert "Sekr3t" not in out


def test_a_worker_without_heartbeat_is_gone_then_leaves_the_list(database_url: str) -> None:
    for name in ("alive", "killed", "long-gone", "stopped"):
        sql(
            database_url,
            "select public.mealworker_register_worker(%s, 'h', 1, 'v', 4, array['ping'])",
            name,
        )
    sql(database_url, "select public.mealworker_stop_worker('stopped')")
    sql(
        database_url,
        "update public.workers set last_seen_at = now() - case id "
        "when 'killed' then interval '5 minutes' when 'long-gone' then interval '3 hours' "
        "else interval '0' end",
    )
    _, out, _ = cli({"DATABASE_URL": database_url}, "stats", "--json")
    workers = {w["id"]: w["state"] for w in json.loads(out)["workers"]}
    assert workers == {"alive": "running", "killed": "gone", "stopped": "stopped"}
    assert json.loads(out)["metrics"]["silent_workers"] == 1
    _, out, _ = cli({"DATABASE_URL": database_url}, "stats")
    assert "gone" in out
    assert "long-gone" not in out


def test_output_off_a_terminal_does_not_wrap_and_counts_read_right(
    env: dict[str, str], database_url: str
) -> None:
    (job_id,) = enqueue_ping(database_url)
    error = "the planner gave up: " + " ".join(f"reason-{n}" for n in range(20))
    sql(
        database_url,
        "update public.background_jobs set status = 'failed', last_error = %s where id = %s",
        error,
        job_id,
    )
    code, out, _ = cli(env, "requeue", "--failed", "--dry-run")
    assert code == 0
    assert "would requeue 1 job" in out
    assert "1 jobs" not in out
    assert any(error in line for line in out.splitlines())  # one line, however long


@pytest.mark.timeout(120)
def test_the_embedded_database_s_first_start_says_what_it_is_doing(
    embedded_data_dir: Path,
) -> None:
    env = {"MEALWORKER_DATA_DIR": str(embedded_data_dir)}
    code, _, err = cli(env, "stats", "--json")
    assert code == 0, err
    assert (
        f"creating the embedded PostgreSQL database in {embedded_data_dir} (first run only" in err
    )
    code, _, err = cli(env, "stats", "--json")
    assert (code, err) == (0, "")  # only the first time
