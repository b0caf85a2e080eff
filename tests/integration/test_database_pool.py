"""The tests' database pool hands every test a database equal to a fresh clone of the template.

A database is reused only when a test left nothing behind but rows; a test that changes the
schema, the database's settings, the planner's statistics or the migration ledger gets its
database dropped, so the next test never inherits it.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.helpers import pg


@pytest.fixture
def pool(pg_server_url: str, pg_template: str) -> Iterator[pg.DatabasePool]:
    own = pg.DatabasePool(pg_server_url, pg_template)
    yield own
    own.close()


def exists(pool: pg.DatabasePool, name: str) -> bool:
    row = pool.admin.execute("select count(*) from pg_database where datname = %s", (name,))
    return row.fetchone() == (1,)


def enqueue_two(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("select public.mealworker_enqueue_jobs('ping', '[{}, {}]')")


def test_a_returned_database_comes_back_empty_with_its_ledger_and_sequences_restarted(
    pool: pg.DatabasePool, pg_server_url: str
) -> None:
    name = pool.take()
    url = pg.with_database(pg_server_url, name)
    with psycopg.connect(url) as db:
        ledger = db.execute("select count(*) from mealworker_private.migrations").fetchone()
    enqueue_two(url)
    lingering = psycopg.connect(url, autocommit=True)

    pool.give_back(name)

    with pytest.raises(psycopg.OperationalError):
        lingering.execute("select 1")
    lingering.close()
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(url)  # a process left behind cannot reach the next test's database
    assert len(pool.idle) == 1  # kept for the next test
    renamed = pool.take()
    assert renamed != name
    assert not exists(pool, name)
    url = pg.with_database(pg_server_url, renamed)
    with psycopg.connect(url) as db:
        assert db.execute("select count(*) from public.background_jobs").fetchone() == (0,)
        assert db.execute("select count(*) from public.background_job_events").fetchone() == (0,)
        kept = db.execute("select count(*) from mealworker_private.migrations").fetchone()
        assert kept == ledger
    enqueue_two(url)
    with psycopg.connect(url) as db:
        ids = db.execute("select id from public.background_jobs order by id").fetchall()
    assert ids == [(1,), (2,)]


CHANGES = {
    "a new table": "create table public.extra (id int)",
    "a replaced function": (
        "create or replace function public.mealworker_job_note(p_job_id bigint,"
        " p_lease_token uuid, p_event text, p_detail jsonb default null) returns boolean"
        " language sql as $$ select false $$"
    ),
    "a disabled trigger": "alter table public.background_jobs disable trigger user",
    "a database setting": "alter database {db} set mealworker.allow_anonymous = on",
    "planner statistics": (
        "select public.mealworker_enqueue_jobs('ping', '[{{}}]'); analyze public.background_jobs"
    ),
    "an edited ledger": "delete from mealworker_private.migrations",
    "a new grant": "grant select on public.background_jobs to anon",
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_database_a_test_changed_is_dropped_not_reused(
    pool: pg.DatabasePool, pg_server_url: str, change: str
) -> None:
    name = pool.take()
    with psycopg.connect(pg.with_database(pg_server_url, name), autocommit=True) as db:
        db.execute(change.format(db=name))

    pool.give_back(name)

    assert pool.idle == []  # dropped: the next test gets a new clone
    assert not exists(pool, name)
