"""``mealworker prune`` (supabase/migrations/20240112000000_prune.sql): finished jobs and old
events go, in batches; running jobs, their events, failed jobs unless asked, jobs of unknown
finish time and meal plans stay."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.queue import Pruned, Queue
from tests.helpers.cli import cli

Conn = psycopg.Connection[dict[str, Any]]
OLD = "now() - interval '40 days'"
RECENT = "now() - interval '2 days'"


def add_job(conn: Conn, status: str, finished: str | None) -> int:
    """A ping job in ``status`` that finished at ``finished`` (SQL), with its events."""
    (row,) = conn.execute(
        "select * from public.mealworker_enqueue_jobs('ping', '[{}]') as id"
    ).fetchall()
    job_id = int(row["id"])
    conn.execute(
        f"update public.background_jobs set status = %s, finished_at = {finished or 'null'}"
        " where id = %s",
        (status, job_id),
    )
    conn.execute(
        f"update public.background_job_events set created_at = {finished or OLD} where job_id = %s",
        (job_id,),
    )
    return job_id


def remaining(conn: Conn) -> tuple[set[int], set[int]]:
    """(ids of the jobs left, ids of the jobs with events left)."""
    jobs = {r["id"] for r in conn.execute("select id from public.background_jobs")}
    events = {r["job_id"] for r in conn.execute("select job_id from public.background_job_events")}
    return jobs, events


@pytest.fixture
def queue_of(conn: Conn) -> dict[str, int]:
    return {
        "old_completed": add_job(conn, "completed", OLD),
        "old_cancelled": add_job(conn, "cancelled", OLD),
        "old_failed": add_job(conn, "failed", OLD),
        "recent_completed": add_job(conn, "completed", RECENT),
        "unknown_finish": add_job(conn, "completed", None),
        "old_pending": add_job(conn, "pending", None),
    }


def prune(url: str, **kwargs: Any) -> Pruned:
    async def run() -> Pruned:
        db = await PostgresDatabase(url).open()
        try:
            return await Queue(db).prune(**kwargs)
        finally:
            await db.close()

    return asyncio.run(run())


def days_ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def events_of(conn: Conn, *job_ids: int) -> int:
    row = conn.execute(
        "select count(*) as n from public.background_job_events where job_id = any(%s)",
        (list(job_ids),),
    ).fetchone()
    assert row is not None
    return int(row["n"])


def old_events(conn: Conn, queue_of: dict[str, int]) -> int:
    """Events older than 30 days that are not a waiting job's."""
    names = ("old_completed", "old_cancelled", "old_failed", "unknown_finish")
    return events_of(conn, *(queue_of[name] for name in names))


def test_finished_jobs_and_their_old_events_go_the_rest_stays(
    conn: Conn, database_url: str, queue_of: dict[str, int]
) -> None:
    expected_events = old_events(conn, queue_of)
    assert expected_events >= 4

    pruned = prune(database_url, finished_before=days_ago(30), events_before=days_ago(30))

    jobs, events = remaining(conn)
    gone = {queue_of["old_completed"], queue_of["old_cancelled"]}
    assert pruned == Pruned(jobs=2, events=expected_events)
    assert jobs == set(queue_of.values()) - gone
    # old events go, with their job or after it finished; a pending job keeps its own
    assert events == {queue_of["recent_completed"], queue_of["old_pending"]}


def test_failed_jobs_go_only_when_asked(
    conn: Conn, database_url: str, queue_of: dict[str, int]
) -> None:
    prune(database_url, finished_before=days_ago(30))
    assert queue_of["old_failed"] in remaining(conn)[0]
    prune(
        database_url,
        finished_before=days_ago(30),
        statuses=("completed", "cancelled", "failed"),
    )
    assert queue_of["old_failed"] not in remaining(conn)[0]
    assert queue_of["unknown_finish"] in remaining(conn)[0]  # when it finished is not known


def test_a_meal_plan_outlives_its_pruned_job(conn: Conn, database_url: str) -> None:
    (row,) = conn.execute(
        "select * from public.mealworker_enqueue_meal_plan(%s)",
        (Jsonb({"days": 1, "meals": ["dinner"], "calories": 2000}),),
    ).fetchall()
    conn.execute(
        "update public.meal_plans set status = 'completed', plan = '{\"days\": []}' where id = %s",
        (row["meal_plan_id"],),
    )
    conn.execute(
        f"update public.background_jobs set status = 'completed', finished_at = {OLD}"
        " where id = %s",
        (row["job_id"],),
    )

    assert prune(database_url, finished_before=days_ago(30)).jobs == 1

    plan = conn.execute(
        "select status, plan from public.meal_plans where id = %s", (row["meal_plan_id"],)
    ).fetchone()
    assert plan == {"status": "completed", "plan": {"days": []}}


def test_batches_until_none_are_left_and_a_dry_run_counts_them_all(
    conn: Conn, database_url: str
) -> None:
    for _ in range(7):
        add_job(conn, "completed", OLD)

    counted = prune(database_url, finished_before=days_ago(30), batch=3, dry_run=True)
    assert counted.jobs == 7
    assert len(remaining(conn)[0]) == 7

    assert prune(database_url, finished_before=days_ago(30), batch=3).jobs == 7
    assert remaining(conn)[0] == set()


@pytest.mark.parametrize(
    ("statuses", "limit"),
    [(["pending"], 10), (["completed", "processing"], 10), ([], 10), (["completed"], 0)],
)
def test_the_function_refuses_what_is_not_finished(
    conn: Conn, statuses: list[str], limit: int
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="mealworker_prune: the"):
        conn.execute(
            "select * from public.mealworker_prune(now(), %s, null, %s)", (statuses, limit)
        )


def test_the_command_over_each_transport(
    env: dict[str, str], database_url: str, queue_of: dict[str, int]
) -> None:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        expected_events = old_events(conn, queue_of)
    code, out, _ = cli(env, "prune", "--dry-run", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["jobs"], report["events"], report["dry_run"]) == (2, expected_events, True)
    assert report["statuses"] == ["completed", "cancelled"]

    code, out, _ = cli(env, "prune", "--events-older-than", "never")
    assert code == 0, out
    assert "deleted 2 jobs (completed, cancelled) finished before" in out
    assert "events kept" in out
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        assert remaining(conn)[1] == set(queue_of.values())  # every job's events, kept

    code, out, _ = cli(env, "prune", "--include-failed", "--older-than", "1d")
    assert code == 0, out
    assert "deleted 2 jobs (completed, cancelled, failed)" in out


def test_a_mistyped_duration_deletes_nothing(env: dict[str, str], queue_of: dict[str, int]) -> None:
    code, out, err = cli(env, "prune", "--older-than", "30 days")
    assert code != 0
    assert (
        "Invalid value for '--older-than': '30 days' is not a duration like 90s, 10m, 24h or 7d"
        in out + err
    )
    code, out, err = cli(env, "prune", "--events-older-than", "forever")
    assert code != 0
    assert "Invalid value for '--events-older-than': 'forever'" in out + err
    assert "or never to keep every event" in out + err
    code, out, _ = cli(env, "prune", "--dry-run", "--json")
    assert json.loads(out)["jobs"] == 2
