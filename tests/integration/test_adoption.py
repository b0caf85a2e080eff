"""``migrate`` on a database of the original Node worker: refused untouched, or adopted.

The fixture, ``tests/fixtures/node_worker_database.sql``, documents the Node worker's schema
this is tested against: its own ``background_jobs``, the app's ``meal_plans`` with app columns,
grants and policies, rows in every state, and the Supabase CLI ledger recording the Node
worker's ``20240101000000_create_background_jobs`` (the same file name as ours).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.mealplans.generation.request import parse_request
from tests.helpers import pg

runner = CliRunner()
FIXTURE = Path(__file__).parents[1] / "fixtures" / "node_worker_database.sql"
APP_COLUMNS = [
    "id",
    "user_id",
    "title",
    "status",
    "preferences",
    "plan",
    "error",
    "is_favorite",
    "shared_with",
    "created_at",
]


@pytest.fixture
def node_database(pg_server_url: str) -> Iterator[str]:
    name = f"mw_node_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    url = pg.with_database(pg_server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIXTURE.read_bytes())
    yield url
    pg.drop(pg_server_url, name)


def snapshot(url: str) -> dict[str, Any]:
    """Every table's columns and rows, every schema, every grant: what 'unchanged' means."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema not in ('pg_catalog', 'information_schema') order by 1"
        ).fetchall()
        result: dict[str, Any] = {
            "schemas": conn.execute("select nspname from pg_namespace order by 1").fetchall(),
            "grants": conn.execute(
                "select grantee, table_name, column_name, privilege_type "
                "from information_schema.column_privileges "
                "where table_schema = 'public' order by 1, 2, 3, 4"
            ).fetchall(),
            "policies": conn.execute(
                "select tablename, policyname from pg_policies order by 1, 2"
            ).fetchall(),
        }
        for (table,) in tables:
            columns = conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema || '.' || table_name = %s order by ordinal_position",
                (table,),
            ).fetchall()
            rows = conn.execute(f"select * from {table} order by 1").fetchall()
            result[table] = (columns, rows)
    return result


def test_migrate_refuses_a_node_worker_database_and_changes_nothing(node_database: str) -> None:
    before = snapshot(node_database)
    result = runner.invoke(app, ["migrate"], env={"DATABASE_URL": node_database})
    assert result.exit_code == 1, result.output
    message = result.stderr
    assert "Traceback" not in result.output
    assert len(message.strip().splitlines()) == 1
    assert "public.background_jobs has no priority, run_at" in message
    assert "lease_token" in message
    assert "public.meal_plans has no request, progress, usage, idempotency_key" in message
    assert "Nothing was changed" in message
    assert "mealworker migrate --adopt" in message
    assert snapshot(node_database) == before
    status = runner.invoke(app, ["migrate", "--status"], env={"DATABASE_URL": node_database})
    assert status.exit_code == 0
    assert "public.background_jobs has no priority" in " ".join(status.stdout.split())
    assert snapshot(node_database) == before


def test_adopt_keeps_every_row_and_app_column_and_queues_the_pending_jobs(
    node_database: str,
) -> None:
    with psycopg.connect(node_database) as conn:
        plans_before = conn.execute(
            f"select {', '.join(APP_COLUMNS)} from public.meal_plans order by id"
        ).fetchall()
        jobs_before = conn.execute("select * from public.background_jobs order by id").fetchall()
        ledger_before = conn.execute(
            "select * from supabase_migrations.schema_migrations order by 1"
        ).fetchall()
    assert len(plans_before) == 6
    assert len(jobs_before) == 7

    result = runner.invoke(app, ["migrate", "--adopt"], env={"DATABASE_URL": node_database})
    assert result.exit_code == 0, result.output
    assert "moved public.background_jobs (7 rows) to mealworker_legacy.background_jobs" in (
        result.stdout
    )
    assert "queued again 4 pending jobs" in result.stdout
    assert "applied 20240101000000_create_background_jobs.sql" in result.stdout

    with psycopg.connect(node_database) as conn:
        # Every plan, every app column, every value (status aside for the re-queued ones).
        plans_after = conn.execute(
            f"select {', '.join(APP_COLUMNS)} from public.meal_plans order by id"
        ).fetchall()
        assert len(plans_after) == len(plans_before)
        status = APP_COLUMNS.index("status")
        for old, new in zip(plans_before, plans_after, strict=True):
            assert old[:status] + old[status + 1 :] == new[:status] + new[status + 1 :]
        statuses: dict[str, str] = dict(
            conn.execute("select id::text, status from public.meal_plans").fetchall()
        )
        assert statuses["00000000-0000-4000-8000-000000000001"] == "completed"
        assert statuses["00000000-0000-4000-8000-000000000003"] == "failed"
        assert statuses["00000000-0000-4000-8000-000000000004"] == "pending"  # was processing
        # The old queue, whole, with its history.
        legacy = conn.execute(
            "select * from mealworker_legacy.background_jobs order by id"
        ).fetchall()
        assert legacy == jobs_before
        # The Supabase ledger is the app's: untouched.
        assert (
            conn.execute(
                "select * from supabase_migrations.schema_migrations order by 1"
            ).fetchall()
            == ledger_before
        )
        # The app's grants and policies are still there.
        assert conn.execute(
            "select has_column_privilege('authenticated', 'public.meal_plans', 'is_favorite', "
            "'update'), has_table_privilege('authenticated', 'public.meal_plans', 'select')"
        ).fetchone() == (True, True)
        policies = {
            r[0]
            for r in conn.execute(
                "select policyname from pg_policies where tablename = 'meal_plans'"
            ).fetchall()
        }
        assert {"Users see their own and shared plans", "Users edit their own plans"} <= policies
        # The pending and interrupted jobs are claimable, with a request the worker accepts.
        claimed = conn.execute(
            "select c.id, c.payload, j.meal_plan_id from public.mealworker_claim_jobs("
            "'adopter', array['generate_meal_plan'], 10) c"
            " join public.background_jobs j on j.id = c.id"
        ).fetchall()
        assert {str(row[2])[-1] for row in claimed} == {"4", "5", "6"}
        for _, payload, plan_id in claimed:
            assert payload["meal_plan_id"] == str(plan_id)
            assert parse_request(payload["request"]).days == 1
            assert payload["legacy_job_id"]
        other = conn.execute(
            "select payload from public.background_jobs where job_type = 'send_weekly_email'"
        ).fetchone()
        assert other is not None
        assert other[0]["userId"].startswith("10000000")
        conn.commit()

    # The app, unchanged, still enqueues the Node worker's way: the job is one mealworker runs.
    with psycopg.connect(node_database) as conn:
        plan = conn.execute(
            "insert into public.meal_plans (user_id, title, preferences) values "
            "('10000000-0000-4000-8000-000000000001', 'New', '{\"days\": 2}') returning id"
        ).fetchone()
        assert plan is not None
        conn.execute(
            "insert into public.background_jobs (job_type, payload) values "
            "('generate_meal_plan', jsonb_build_object('mealPlanId', %s::text, "
            "'preferences', '{\"days\": 2}'::jsonb))",
            (plan[0],),
        )
        conn.commit()
        (node_job,) = conn.execute(
            "select c.payload, j.meal_plan_id from public.mealworker_claim_jobs("
            "'adopter', array['generate_meal_plan'], 10) c"
            " join public.background_jobs j on j.id = c.id"
        ).fetchall()
        assert node_job[1] == plan[0]
        assert parse_request(node_job[0]["request"]).days == 2

    again = runner.invoke(app, ["migrate"], env={"DATABASE_URL": node_database})
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "database is up to date"


def test_a_meal_plans_table_that_cannot_be_adopted_is_refused_by_name(
    node_database: str,
) -> None:
    with psycopg.connect(node_database, autocommit=True) as conn:
        conn.execute("alter table public.meal_plans add column rating int not null default 0")
        conn.execute("alter table public.meal_plans alter column rating drop default")
    before = snapshot(node_database)
    result = runner.invoke(app, ["migrate", "--adopt"], env={"DATABASE_URL": node_database})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "public.meal_plans.rating is NOT NULL without a default" in result.stderr
    assert snapshot(node_database) == before


def test_the_worker_completes_the_adopted_jobs(node_database: str) -> None:
    env = {"DATABASE_URL": node_database, "PLANNER": "catalog"}
    assert runner.invoke(app, ["migrate", "--adopt"], env=env).exit_code == 0
    result = runner.invoke(app, ["work", "--until-empty"], env=env)
    assert result.exit_code == 0, result.output
    assert "3 completed, 0 failed" in result.stderr
    with psycopg.connect(node_database) as conn:
        rows = conn.execute(
            "select right(id::text, 1), status, title, plan is not null from public.meal_plans "
            "order by id"
        ).fetchall()
    assert rows == [
        ("1", "completed", "Week 1", True),
        ("2", "completed", "Week 2", True),
        ("3", "failed", "Oops", False),
        ("4", "completed", "Cutting", True),
        ("5", "completed", "Vegan", True),
        ("6", "completed", "Family", True),
    ]


def test_an_adoption_that_fails_half_way_changes_nothing(node_database: str) -> None:
    with psycopg.connect(node_database, autocommit=True) as conn:
        conn.execute(
            "insert into public.background_jobs (job_type, payload, status, attempts) values "
            "('generate_meal_plan', '{\"mealPlanId\": \"00000000-0000-4000-8000-000000000005\"}', "
            "'pending', 2147483647)"
        )
    before = snapshot(node_database)
    result = runner.invoke(app, ["migrate", "--adopt"], env={"DATABASE_URL": node_database})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "migrate --adopt failed, nothing was changed" in result.stderr
    assert snapshot(node_database) == before
