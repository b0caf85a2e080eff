"""The partial index from a job to its meal plan
(supabase/migrations/20240110000000_partial_meal_plan_index.sql): jobs without a meal plan are
not in it, lookups by meal plan still use it, and an operator's own index is never dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[dict[str, Any]]

MIGRATION = (
    Path(__file__).parents[2]
    / "supabase"
    / "migrations"
    / "20240110000000_partial_meal_plan_index.sql"
)


def indexes(conn: Conn) -> dict[str, str]:
    rows = conn.execute(
        "select indexname, indexdef from pg_indexes"
        " where schemaname = 'public' and tablename = 'background_jobs'"
        " and indexdef like '%meal_plan_id%'"
    ).fetchall()
    return {r["indexname"]: r["indexdef"] for r in rows}


def test_the_index_holds_only_jobs_with_a_meal_plan(conn: Conn) -> None:
    assert indexes(conn) == {
        "background_jobs_meal_plan_job_idx": "CREATE INDEX background_jobs_meal_plan_job_idx"
        " ON public.background_jobs USING btree (meal_plan_id)"
        " WHERE (meal_plan_id IS NOT NULL)"
    }


def test_a_lookup_by_meal_plan_uses_it_under_a_generic_plan(conn: Conn) -> None:
    conn.execute("set enable_seqscan = off")
    conn.execute("set plan_cache_mode = force_generic_plan")
    conn.execute(
        "prepare by_plan(uuid) as delete from public.background_jobs where $1 = meal_plan_id"
    )
    plan = conn.execute("explain (costs off) execute by_plan(gen_random_uuid())").fetchall()
    assert "background_jobs_meal_plan_job_idx" in "\n".join(r["QUERY PLAN"] for r in plan)


def test_deleting_a_meal_plan_still_deletes_its_job(conn: Conn) -> None:
    row = conn.execute(
        "select * from public.mealworker_enqueue_meal_plan(%s)",
        (Jsonb({"days": 1, "meals": ["dinner"], "calories": 2000}),),
    ).fetchone()
    assert row is not None
    conn.execute("delete from public.meal_plans where id = %s", (row["meal_plan_id"],))
    left = conn.execute(
        "select count(*) as n from public.background_jobs where id = %s", (row["job_id"],)
    ).fetchone()
    assert left == {"n": 0}


def test_an_operators_index_of_that_name_is_kept(conn: Conn) -> None:
    conn.execute("drop index public.background_jobs_meal_plan_job_idx")
    conn.execute(
        "create index background_jobs_meal_plan_id_idx"
        " on public.background_jobs (meal_plan_id, status)"
    )
    conn.execute(MIGRATION.read_text())
    assert set(indexes(conn)) == {
        "background_jobs_meal_plan_id_idx",
        "background_jobs_meal_plan_job_idx",
    }
    assert "(meal_plan_id, status)" in indexes(conn)["background_jobs_meal_plan_id_idx"]


def test_the_first_migrations_index_is_replaced(conn: Conn) -> None:
    conn.execute("drop index public.background_jobs_meal_plan_job_idx")
    conn.execute(
        "create index background_jobs_meal_plan_id_idx on public.background_jobs (meal_plan_id)"
    )
    conn.execute(MIGRATION.read_text())
    assert set(indexes(conn)) == {"background_jobs_meal_plan_job_idx"}
