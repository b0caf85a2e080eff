"""What an app's signed-in users may do, straight in SQL as PostgREST would run it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from mealplan_cli.core.db.migrations import apply_migrations, bundled_migrations
from tests.helpers import pg
from tests.helpers.end_users import as_role, request_plan, set_database

Conn = psycopg.Connection[dict[str, Any]]


def visible_plans(url: str, user: uuid.UUID) -> list[Any]:
    with as_role(url, "authenticated", user) as conn:
        return [row["id"] for row in conn.execute("select id from public.meal_plans").fetchall()]


def test_a_user_requests_a_plan_and_sees_only_their_own(database_url: str) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    plan = request_plan(database_url, alice, {"days": 3, "diet": ["vegan"]})
    assert visible_plans(database_url, alice) == [plan]
    assert visible_plans(database_url, bob) == []
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        job = conn.execute(
            "select job_type, payload->'request' as request from public.background_jobs"
        ).fetchone()
    assert job == {"job_type": "generate_meal_plan", "request": {"days": 3, "diet": ["vegan"]}}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"days": 30}, "days"),
        ({"calories": 99999}, "calories"),
        ({"diet": ["carnivore"]}, "diet"),
        ({"allergies": "nuts, kryptonite"}, "allergies"),
        ({"notes": "x" * 501}, "notes"),
        ({"macros": {"protein": 50, "carbs": 50, "fat": 50}}, "macros"),
        ({"colour": "blue"}, "colour"),
        ({"exclude": ["x" * 41]}, "exclude"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_field(
    database_url: str, request_body: dict[str, Any], field: str
) -> None:
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match=f"invalid meal-plan request: {field}"
    ):
        request_plan(database_url, uuid.uuid4(), request_body)


def test_plans_in_flight_are_limited_per_user_but_a_retry_is_not(database_url: str) -> None:
    user = uuid.uuid4()
    first = request_plan(database_url, user, {"days": 1}, key="k1")
    request_plan(database_url, user, {"days": 1})
    request_plan(database_url, user, {"days": 1})
    with pytest.raises(psycopg.Error, match="too many meal plans in progress") as caught:
        request_plan(database_url, user, {"days": 1})
    assert caught.value.sqlstate == "PT429"
    assert request_plan(database_url, user, {"days": 1}, key="k1") == first
    assert request_plan(database_url, uuid.uuid4(), {"days": 1}) is not None


def test_only_the_owner_cancels(database_url: str) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    plan = request_plan(database_url, alice, {"days": 1})
    with (
        pytest.raises(psycopg.Error, match="no such meal plan"),
        as_role(database_url, "authenticated", bob) as conn,
    ):
        conn.execute("select public.cancel_meal_plan(meal_plan_id => %s)", (plan,))
    with as_role(database_url, "authenticated", alice) as conn:
        row = conn.execute(
            "select public.cancel_meal_plan(meal_plan_id => %s) as status", (plan,)
        ).fetchone()
    assert row == {"status": "cancelled"}


def test_anon_may_neither_request_nor_read(database_url: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(database_url, "anon") as conn:
        conn.execute("select public.request_meal_plan(request => '{}'::jsonb)")
    with (
        as_role(database_url, "anon") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("select id from public.meal_plans")


def test_a_user_cannot_call_the_queue_functions(database_url: str) -> None:
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        as_role(database_url, "authenticated", uuid.uuid4()) as conn,
    ):
        conn.execute("select * from public.mealworker_claim_jobs('w', array['ping'], 10)")


def test_meal_plans_join_the_realtime_publication_where_it_exists(database_url: str) -> None:
    (migration,) = [m for m in bundled_migrations() if m.name == "end_user_requests"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create publication supabase_realtime")
        conn.execute(migration.sql.encode())
        conn.execute(migration.sql.encode())  # idempotent: added once
        rows = conn.execute(
            "select tablename from pg_publication_tables where pubname = 'supabase_realtime'"
        ).fetchall()
    assert rows == [("meal_plans",)]


def test_plans_requested_per_day_are_capped_even_when_cancelled(database_url: str) -> None:
    set_database(database_url, "mealworker.max_plans_per_day", "2")
    user = uuid.uuid4()
    for key in ("a", "b"):
        plan = request_plan(database_url, user, {"days": 1}, key=key)
        with as_role(database_url, "authenticated", user) as conn:
            conn.execute("select public.cancel_meal_plan(meal_plan_id => %s)", (plan,))
    with pytest.raises(
        psycopg.Error, match=r"too many meal plans requested today \(2 of 2"
    ) as caught:
        request_plan(database_url, user, {"days": 1})
    assert caught.value.sqlstate == "PT429"
    assert request_plan(database_url, user, {"days": 1}, key="a") is not None  # a retry
    assert request_plan(database_url, uuid.uuid4(), {"days": 1}) is not None


def anonymous_request(url: str) -> Any:
    user = uuid.uuid4()
    with psycopg.connect(url, row_factory=dict_row) as conn, conn.transaction():
        conn.execute("set local role authenticated")
        claims = {"role": "authenticated", "sub": str(user), "is_anonymous": True}
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        row = conn.execute("select public.request_meal_plan('{}'::jsonb) as id").fetchone()
    assert row is not None
    return row["id"]


def test_anonymous_sign_ins_are_refused_unless_allowed(database_url: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="anonymous users cannot"):
        anonymous_request(database_url)
    set_database(database_url, "mealworker.allow_anonymous", "on")
    assert anonymous_request(database_url) is not None


SUPABASE_AUTH = """
create table auth.users (id uuid primary key, email text);
insert into auth.users values ('00000000-0000-4000-8000-0000000000a1', 'ann@example.com'),
                              ('00000000-0000-4000-8000-0000000000b2', 'ben@example.com');
"""
ANN = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
BEN = uuid.UUID("00000000-0000-4000-8000-0000000000b2")


def migrate(url: str, *, before: str | None = None) -> None:
    """Apply the migrations; with ``before``, stop before that version."""
    migrations = [m for m in bundled_migrations() if before is None or m.version < before]

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await apply_migrations(conn, migrations, prior_schema=None)

    asyncio.run(run())


@pytest.fixture
def supabase_database(pg_server_url: str) -> Iterator[str]:
    """An empty database with Supabase's auth.users."""
    name = f"mw_auth_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    url = pg.with_database(pg_server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema auth")
        conn.execute(SUPABASE_AUTH)
    yield url
    pg.drop(pg_server_url, name)


def test_deleting_a_user_deletes_their_plans(supabase_database: str) -> None:
    migrate(supabase_database)
    ann_plan = request_plan(supabase_database, ANN, {"days": 1})
    ben_plan = request_plan(supabase_database, BEN, {"days": 1})
    with psycopg.connect(supabase_database, autocommit=True) as conn:
        assert conn.execute(
            "select convalidated from pg_constraint where conname = 'meal_plans_user_id_fkey'"
        ).fetchone() == (True,)
        conn.execute("delete from auth.users where id = %s", (ANN,))
        left = conn.execute("select id from public.meal_plans").fetchall()
        jobs = conn.execute("select meal_plan_id from public.background_jobs").fetchall()
    assert left == [(ben_plan,)]
    assert jobs == [(ben_plan,)]
    assert ann_plan != ben_plan


def test_plans_of_users_already_deleted_are_kept_and_reported(supabase_database: str) -> None:
    migrate(supabase_database, before="20240105000000")
    orphan = request_plan(supabase_database, uuid.uuid4(), {"days": 1})
    migrate(supabase_database)
    with psycopg.connect(supabase_database, autocommit=True) as conn:
        assert conn.execute("select id from public.meal_plans").fetchall() == [(orphan,)]
        assert conn.execute(
            "select convalidated, confdeltype from pg_constraint "
            "where conname = 'meal_plans_user_id_fkey'"
        ).fetchone() == (False, "c")
    # Still enforced for new plans: an unknown user cannot get one.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        request_plan(supabase_database, uuid.uuid4(), {"days": 1})
    assert request_plan(supabase_database, BEN, {"days": 1}) is not None


def test_without_auth_users_there_is_no_foreign_key(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "select count(*) from pg_constraint where conname = 'meal_plans_user_id_fkey'"
        ).fetchone() == (0,)
