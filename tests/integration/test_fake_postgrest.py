"""FakePostgrest as supabase-py (and plain httpx) sees it: shapes, arguments, roles, errors, faults.

These tests pin the fake's contract (see /work/shared/POSTGREST.md), so that tests of the rest
transport can trust that what the fake answers is what Supabase's Data API would answer.

supabase-py's default PostgREST client passes ``timeout=`` to ``AsyncPostgrestClient``, which
warns ``DeprecationWarning`` (an error under this suite's filterwarnings), so every client here
is given its own ``httpx.AsyncClient``, which is also what the test closes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from tests.fakes.postgrest_server import (
    DEFAULT_JWT_SECRET,
    FakePostgrest,
    JwtError,
    PostgrestFault,
    make_jwt,
    verify_jwt,
)

# The fake's own contract, a minute of HTTP round trips; the suite's users of it stay quick.
pytestmark = pytest.mark.slow

SECRET_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
PUBLISHABLE_KEY = "sb_publishable_ZaD5a2hhHq8dEXA6HTdQAg_bTWzsuJk"
USER_ID = uuid.UUID("5f0c1e2a-4b7d-4e59-9a3c-2d8b6f1e0a47")

# Made by the superuser, like a migration: PUBLIC may execute them, so anon and authenticated
# can, unlike the project's mealworker_* functions.
TEST_SCHEMA_SQL = """
create table public.t_notes (note text primary key);
grant select, insert on public.t_notes to anon, authenticated, service_role;

create function public.t_add(a int, b int default 10) returns int
  language sql immutable as $$ select a + b $$;
create function public.t_nothing() returns int
  language sql immutable as $$ select null::int $$;

create type public.t_pair as (n int, label text);
create function public.t_pair(p_n int) returns public.t_pair
  language sql stable as $$ select p_n, 'n' || p_n $$;
create function public.t_split(p_n int, out half int, out rest int)
  language sql immutable as $$ select p_n / 2, p_n % 2 $$;

create function public.t_series(p_n int) returns setof int
  language sql immutable as $$ select pg_catalog.generate_series(1, p_n) $$;
create function public.t_rows(p_n int)
  returns table (id int, at timestamptz, ref uuid, amount numeric, doc jsonb, tags text[])
  language sql stable as $$
    select i,
           timestamptz '2024-05-01 12:00:00+00' + i * interval '1 hour',
           format('00000000-0000-0000-0000-%s', lpad(i::text, 12, '0'))::uuid,
           i * 1.5,
           jsonb_build_object('i', i, 'nested', jsonb_build_array(i, null)),
           array['t' || i]
      from generate_series(1, p_n) as i
  $$;
create function public.t_arrays(p_ids bigint[], p_docs jsonb[] default '{}') returns jsonb
  language sql immutable as $$ select jsonb_build_object('ids', p_ids, 'docs', to_jsonb(p_docs)) $$;
create function public.t_echo(jsonb) returns jsonb
  language sql immutable as $$ select $1 $$;
create function public.t_over(a int) returns text language sql immutable as $$ select 'int' $$;
create function public.t_over(a text) returns text language sql immutable as $$ select 'text' $$;

create function public.t_note(p_note text) returns void
  language sql volatile as $$ insert into public.t_notes (note) values (p_note) $$;
create function public.t_add_note(p_note text) returns text
  language sql volatile as $$ insert into public.t_notes (note) values (p_note) returning note $$;
create function public.t_add_notes(p_notes text[]) returns setof text
  language sql volatile as $$
    insert into public.t_notes (note) select unnest(p_notes) returning note
  $$;
create function public.t_note_count() returns bigint
  language sql stable as $$ select count(*) from public.t_notes $$;
create function public.t_sneaky_write(p_note text) returns int
  language plpgsql stable as $$
begin
  perform public.t_note(p_note);  -- a VOLATILE function called from a STABLE one
  return 1;
end
$$;
create function public.t_read_only() returns text
  language sql volatile as $$ select current_setting('transaction_read_only') $$;
create function public.t_read_only_stable() returns text
  language sql stable as $$ select current_setting('transaction_read_only') $$;

create function public.t_fail(p_message text) returns int
  language plpgsql as $$
begin
  raise exception '%', p_message using detail = 'the detail', hint = 'the hint';
end
$$;
create function public.t_fail_with(p_code text) returns int
  language plpgsql as $$
begin
  raise exception using errcode = p_code, message = 'failed with ' || p_code;
end
$$;
create function public.t_payment_required() returns int
  language plpgsql as $$
begin
  raise sqlstate 'PGRST' using
    message = '{"code":"123","message":"Payment Required","details":"Quota exceeded","hint":null}',
    detail = '{"status":402,"headers":{"X-Powered-By":"Nerd Rage"}}';
end
$$;
create function public.t_accepted() returns text
  language plpgsql volatile as $$
begin
  perform set_config('response.status', '202', true);
  perform set_config('response.headers', '[{"Location": "/jobs/7"}]', true);
  return 'queued';
end
$$;

create function public.t_uid() returns uuid language sql stable as $$ select auth.uid() $$;
create function public.t_whoami() returns jsonb
  language sql stable as $$
    select jsonb_build_object(
      'user', current_user,
      'claims', current_setting('request.jwt.claims', true)::jsonb,
      'method', current_setting('request.method', true),
      'path', current_setting('request.path', true),
      'headers', current_setting('request.headers', true)::jsonb)
  $$;
create function public.t_sleep(p_seconds float8) returns void
  language sql volatile as $$ select pg_sleep(p_seconds) $$;
"""


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def test_db(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TEST_SCHEMA_SQL)
    return database_url


@pytest.fixture
def fake(test_db: str) -> Iterator[FakePostgrest]:
    with FakePostgrest(
        test_db, secret_keys=[SECRET_KEY], publishable_keys=[PUBLISHABLE_KEY]
    ) as server:
        yield server


@asynccontextmanager
async def supabase_client(
    fake: FakePostgrest, key: str, *, token: str | None = None, http_timeout: float = 10.0
) -> AsyncIterator[AsyncClient]:
    async with httpx.AsyncClient(timeout=http_timeout) as http:
        options = AsyncClientOptions(httpx_client=http)
        if token is not None:
            options.headers = {**options.headers, "Authorization": f"Bearer {token}"}
        yield await acreate_client(fake.base_url, key, options)


def call(
    fake: FakePostgrest,
    function: str,
    params: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    token: str | None = None,
    get: bool = False,
    single: bool = False,
    timeout: float = 10.0,
) -> Any:
    """``client.rpc(function, params).execute().data``, through a fresh supabase-py client."""

    async def scenario() -> Any:
        client_key = key or fake.service_role_key
        async with supabase_client(fake, client_key, token=token, http_timeout=timeout) as client:
            builder = client.rpc(function, params or {}, get=get)
            if single:
                builder = builder.single()
            return (await builder.execute()).data

    return asyncio.run(scenario())


def call_error(fake: FakePostgrest, function: str, params: Any = None, **options: Any) -> APIError:
    with pytest.raises(APIError) as caught:
        call(fake, function, params, **options)
    return caught.value


def post(
    fake: FakePostgrest,
    function: str,
    body: Any = None,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    key = key or fake.service_role_key
    return httpx.post(
        f"{fake.rest_url}/rpc/{function}",
        json={} if body is None else body,
        headers={"apikey": key, "Authorization": f"Bearer {key}", **(headers or {})},
        timeout=10,
    )


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    payload = response.json()
    assert set(payload) == {"code", "message", "details", "hint"}
    return dict(payload)


# --- result shapes ----------------------------------------------------------------------------


def test_scalar_results_are_bare_json_values(fake: FakePostgrest) -> None:
    assert call(fake, "t_add", {"a": 1}) == 11
    assert call(fake, "t_add", {"a": 1, "b": 2}) == 3
    assert call(fake, "t_nothing") is None

    response = post(fake, "t_add", {"a": 1})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.content == b"11"


def test_a_composite_or_out_parameters_give_an_object(fake: FakePostgrest) -> None:
    assert call(fake, "t_pair", {"p_n": 3}) == {"n": 3, "label": "n3"}
    assert call(fake, "t_split", {"p_n": 7}) == {"half": 3, "rest": 1}


def test_sets_give_arrays_and_an_empty_set_an_empty_array(fake: FakePostgrest) -> None:
    assert call(fake, "t_series", {"p_n": 3}) == [1, 2, 3]
    assert call(fake, "t_series", {"p_n": 0}) == []
    assert call(fake, "t_rows", {"p_n": 0}) == []


def test_values_are_converted_to_json_as_postgrest_does(fake: FakePostgrest) -> None:
    rows = call(fake, "t_rows", {"p_n": 2})

    assert rows[0] == {
        "id": 1,
        "at": "2024-05-01T13:00:00+00:00",
        "ref": "00000000-0000-0000-0000-000000000001",
        "amount": 1.5,
        "doc": {"i": 1, "nested": [1, None]},
        "tags": ["t1"],
    }
    assert [row["id"] for row in rows] == [1, 2]


def test_json_arrays_reach_array_parameters(fake: FakePostgrest) -> None:
    result = call(fake, "t_arrays", {"p_ids": [3, 1], "p_docs": [{"a": 1}, {"b": [2]}]})

    assert result == {"ids": [3, 1], "docs": [{"a": 1}, {"b": [2]}]}


def test_void_gives_204_and_the_client_an_empty_list(fake: FakePostgrest) -> None:
    assert call(fake, "t_note", {"p_note": "first"}) == []

    response = post(fake, "t_note", {"p_note": "second"})
    assert response.status_code == 204
    assert response.content == b""
    assert call(fake, "t_note_count") == 2


def test_a_single_unnamed_json_parameter_receives_the_whole_body(fake: FakePostgrest) -> None:
    body = {"anything": [1, {"deep": None}], "goes": True}

    assert call(fake, "t_echo", body) == body


def test_single_wants_exactly_one_row_and_undoes_the_call_otherwise(
    fake: FakePostgrest,
) -> None:
    assert call(fake, "t_rows", {"p_n": 1}, single=True)["id"] == 1
    assert call(fake, "t_add", {"a": 1}, single=True) == 11

    none = call_error(fake, "t_rows", {"p_n": 0}, single=True)
    two = call_error(fake, "t_add_notes", {"p_notes": ["a", "b"]}, single=True)

    assert (none.code, none.message) == (
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
    )
    assert none.details == "The result contains 0 rows"
    assert (two.code, two.details) == ("PGRST116", "The result contains 2 rows")
    assert call(fake, "t_note_count") == 0
    assert fake.requests[-2].status == 406


def test_response_settings_set_the_status_and_headers(fake: FakePostgrest) -> None:
    response = post(fake, "t_accepted")

    assert response.status_code == 202
    assert response.headers["location"] == "/jobs/7"
    assert response.json() == "queued"


# --- arguments --------------------------------------------------------------------------------


def test_missing_or_extra_arguments_are_pgrst202(fake: FakePostgrest) -> None:
    missing = call_error(fake, "t_add", {})
    extra = call_error(fake, "t_add", {"a": 1, "c": 2})
    only_optional = call_error(fake, "t_add", {"b": 1})

    assert missing.code == "PGRST202"
    assert missing.message == (
        "Could not find the function public.t_add without parameters in the schema cache"
    )
    assert missing.hint == "Perhaps you meant to call the function public.t_add(a, b)"
    assert extra.message == "Could not find the function public.t_add(a, c) in the schema cache"
    assert extra.details == (
        "Searched for the function public.t_add with parameters a, c or with a single unnamed "
        "json/jsonb parameter, but no matches were found in the schema cache."
    )
    assert only_optional.code == "PGRST202"
    response = post(fake, "t_add", {"b": 1})
    assert response.status_code == 404
    assert assert_error_shape(response)["code"] == "PGRST202"


def test_an_unknown_function_is_pgrst202_with_a_suggestion(fake: FakePostgrest) -> None:
    close = call_error(fake, "t_ad", {"a": 1})
    far = call_error(fake, "no_such_function_anywhere")

    assert close.code == "PGRST202"
    assert close.message == "Could not find the function public.t_ad(a) in the schema cache"
    assert close.hint == "Perhaps you meant to call the function public.t_add"
    assert far.hint is None


def test_overloads_that_both_match_are_pgrst203(fake: FakePostgrest) -> None:
    response = post(fake, "t_over", {"a": 1})

    assert response.status_code == 300
    error = assert_error_shape(response)
    assert error["code"] == "PGRST203"
    assert error["message"] == (
        "Could not choose the best candidate function between: "
        "public.t_over(a => integer), public.t_over(a => text)"
    )


def test_get_passes_query_parameters_as_text_cast_to_the_parameter_types(
    fake: FakePostgrest,
) -> None:
    assert call(fake, "t_add", {"a": 2}, get=True) == 12
    assert call(fake, "t_arrays", {"p_ids": [5, 6]}, get=True) == {"ids": [5, 6], "docs": []}

    request = fake.requests[-1]
    assert (request.method, request.query) == ("GET", {"p_ids": "{5,6}"})


# --- transactions -----------------------------------------------------------------------------


def test_get_and_stable_functions_run_read_only(fake: FakePostgrest) -> None:
    assert call(fake, "t_read_only") == "off"
    assert call(fake, "t_read_only", get=True) == "on"
    assert call(fake, "t_read_only_stable") == "on"


def test_a_write_in_a_read_only_call_is_405(fake: FakePostgrest) -> None:
    via_get = call_error(fake, "t_add_note", {"p_note": "x"}, get=True)
    via_stable = post(fake, "t_sneaky_write", {"p_note": "y"})

    assert via_get.code == "25006"
    assert via_get.message == "cannot execute INSERT in a read-only transaction"
    assert via_stable.status_code == 405
    assert assert_error_shape(via_stable)["code"] == "25006"
    assert call(fake, "t_note_count") == 0


def test_each_request_is_one_transaction(fake: FakePostgrest) -> None:
    call(fake, "t_add_note", {"p_note": "kept"})
    call_error(fake, "t_add_note", {"p_note": "kept"})

    assert call(fake, "t_note_count") == 1
    stats = fake.stats
    assert (stats.transactions, stats.commits, stats.rollbacks) == (3, 2, 1)


# --- database errors --------------------------------------------------------------------------


def test_raise_exception_is_400_p0001_with_its_message(fake: FakePostgrest) -> None:
    error = call_error(fake, "t_fail", {"p_message": "no plan for you"})

    assert (error.code, error.message) == ("P0001", "no plan for you")
    assert (error.details, error.hint) == ("the detail", "the hint")
    assert post(fake, "t_fail", {"p_message": "x"}).status_code == 400


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [
        ("PT402", 402),
        ("PT404", 404),
        ("23503", 409),
        ("40001", 500),
        ("53300", 503),
        ("22P02", 400),
    ],
)
def test_sqlstates_map_to_postgrests_statuses(
    fake: FakePostgrest, sqlstate: str, status: int
) -> None:
    response = post(fake, "t_fail_with", {"p_code": sqlstate})

    assert response.status_code == status
    assert assert_error_shape(response) == {
        "code": sqlstate,
        "message": f"failed with {sqlstate}",
        "details": None,
        "hint": None,
    }


def test_raise_sqlstate_pgrst_controls_the_whole_response(fake: FakePostgrest) -> None:
    response = post(fake, "t_payment_required")

    assert response.status_code == 402
    assert response.headers["x-powered-by"] == "Nerd Rage"
    assert response.json()["code"] == "123"


def test_unique_violation_is_409(fake: FakePostgrest) -> None:
    call(fake, "t_add_note", {"p_note": "once"})

    error = call_error(fake, "t_add_note", {"p_note": "once"})

    assert error.code == "23505"
    assert error.details == "Key (note)=(once) already exists."
    assert fake.requests[-1].status == 409


def test_a_trigger_s_refusal_keeps_its_code_message_detail_and_hint(
    fake: FakePostgrest, test_db: str
) -> None:
    """What an app's guard raises reaches the client in PostgREST's error format, as the
    worker needs it to fail that job alone with the database's own words."""
    with psycopg.connect(test_db, autocommit=True) as conn:
        conn.execute(
            "create function public.t_hold() returns trigger language plpgsql as $$"
            " begin if new.note = 'held' then"
            "   raise exception 'note % is on hold', new.note using errcode = '42501',"
            "     detail = 'held by the app', hint = 'ask support';"
            " end if; return new; end $$;"
            " create trigger t_hold before insert on public.t_notes"
            " for each row execute function public.t_hold()"
        )

    error = call_error(fake, "t_add_note", {"p_note": "held"})

    assert (error.code, error.message) == ("42501", "note held is on hold")
    assert (error.details, error.hint) == ("held by the app", "ask support")
    assert fake.requests[-1].status == 403  # 42501 with a JWT: PostgREST's mapSQLtoHTTP
    assert call(fake, "t_add_note", {"p_note": "free"}) == "free"


def test_the_roles_statement_timeout_applies(fake: FakePostgrest, test_db: str) -> None:
    with psycopg.connect(test_db, autocommit=True) as conn:
        conn.execute(
            "do $$ begin execute format("
            "'alter role authenticated in database %I set statement_timeout = 100', "
            "current_database()); end $$"
        )

    error = call_error(
        fake, "t_sleep", {"p_seconds": 2}, key=fake.anon_key, token=fake.user_jwt(USER_ID)
    )

    assert (error.code, error.message) == ("57014", "canceling statement due to statement timeout")
    assert fake.requests[-1].status == 500
    assert call(fake, "t_sleep", {"p_seconds": 0.2}) == []  # service_role has no such limit


# --- roles and keys ---------------------------------------------------------------------------


def test_project_functions_are_for_the_service_role_only(fake: FakePostgrest) -> None:
    anon = call_error(fake, "mealworker_queue_stats", key=fake.anon_key)
    user = call_error(
        fake, "mealworker_queue_stats", key=fake.anon_key, token=fake.user_jwt(USER_ID)
    )

    assert anon.code == user.code == "42501"
    assert anon.message == "permission denied for function mealworker_queue_stats"
    assert [r.status for r in fake.requests] == [401, 403]
    assert [r.role for r in fake.requests] == ["anon", "authenticated"]
    assert call(fake, "mealworker_queue_stats")["by_status"]["pending"] == 0

    response = post(fake, "mealworker_queue_stats", key=fake.anon_key)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_real_project_functions_as_the_service_role(fake: FakePostgrest) -> None:
    ids = call(
        fake,
        "mealworker_enqueue_jobs",
        {"p_job_type": "generate_meal_plan", "p_payloads": [{"n": 1}, {"n": 2}]},
    )
    stats = call(fake, "mealworker_queue_stats")
    claimed = call(
        fake,
        "mealworker_claim_jobs",
        {"p_worker_id": "w1", "p_job_types": ["generate_meal_plan"], "p_limit": 1},
    )

    assert isinstance(ids, list)
    assert [type(i) for i in ids] == [int, int]
    assert stats["by_status"]["pending"] == 2
    assert stats["by_type"] == {"generate_meal_plan": {"pending": 2}}
    assert [job["id"] for job in claimed] == ids[:1]
    assert claimed[0]["payload"] == {"n": 1}
    assert uuid.UUID(claimed[0]["lease_token"])


def test_auth_uid_sees_the_tokens_subject(fake: FakePostgrest) -> None:
    assert call(fake, "t_uid", key=fake.anon_key, token=fake.user_jwt(USER_ID)) == str(USER_ID)
    assert call(fake, "t_uid", key=fake.anon_key) is None


def test_the_request_settings_are_set_as_postgrest_sets_them(fake: FakePostgrest) -> None:
    seen = call(fake, "t_whoami", key=fake.anon_key, token=fake.user_jwt(USER_ID))

    assert seen["user"] == "authenticated"
    assert seen["claims"]["sub"] == str(USER_ID)
    assert seen["claims"]["role"] == "authenticated"
    assert (seen["method"], seen["path"]) == ("POST", "/rpc/t_whoami")
    assert seen["headers"]["content-profile"] == "public"
    assert seen["headers"]["x-client-info"].startswith("supabase-py/")
    assert seen["headers"]["apikey"] == fake.anon_key


def test_no_authorization_means_the_anon_role(fake: FakePostgrest) -> None:
    response = post(fake, "t_whoami", headers={"Authorization": "Bearer"})
    bare = httpx.post(
        f"{fake.rest_url}/rpc/t_whoami", json={}, headers={"apikey": fake.anon_key}, timeout=10
    )

    assert response.status_code == 401  # an empty bearer token is not no token
    assert assert_error_shape(response)["code"] == "PGRST301"
    assert bare.json()["user"] == "anon"
    assert bare.json()["claims"] == {"role": "anon"}


def test_a_token_with_a_bad_signature_is_pgrst301(fake: FakePostgrest) -> None:
    forged = make_jwt({"role": "service_role"}, "another-secret-with-at-least-32-characters")

    error = call_error(fake, "t_add", {"a": 1}, key=fake.anon_key, token=forged)
    garbage = post(fake, "t_add", {"a": 1}, headers={"Authorization": "Bearer not-a-jwt"})

    assert (error.code, error.message) == ("PGRST301", "No suitable key or wrong key type")
    assert garbage.status_code == 401
    assert garbage.json()["message"] == "Expected 3 parts in JWT; got 1"
    assert garbage.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_an_expired_token_is_pgrst303_after_the_clock_skew(fake: FakePostgrest) -> None:
    expired = fake.user_jwt(USER_ID, expires_in=-120)
    just_expired = fake.user_jwt(USER_ID, expires_in=-5)

    error = call_error(fake, "t_uid", key=fake.anon_key, token=expired)

    assert (error.code, error.message) == ("PGRST303", "JWT expired")
    assert fake.requests[-1].status == 401
    assert call(fake, "t_uid", key=fake.anon_key, token=just_expired) == str(USER_ID)


def test_roles_outside_supabases_three_are_refused(fake: FakePostgrest) -> None:
    def as_role(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {fake.make_jwt({'role': role})}"}

    superuser = post(fake, "t_add", {"a": 1}, headers=as_role("postgres"))
    ghost = post(fake, "t_add", {"a": 1}, headers=as_role("nobody_here"))

    assert (superuser.status_code, superuser.json()["code"]) == (403, "42501")
    assert (ghost.status_code, ghost.json()["code"]) == (401, "22023")


def test_a_secret_key_acts_as_the_service_role(fake: FakePostgrest) -> None:
    seen = call(fake, "t_whoami", key=SECRET_KEY)

    assert seen["user"] == "service_role"
    assert seen["claims"]["role"] == "service_role"
    assert call(fake, "mealworker_queue_stats", key=SECRET_KEY)["by_status"]["failed"] == 0
    assert call(fake, "t_whoami", key=PUBLISHABLE_KEY)["user"] == "anon"


def test_a_secret_key_in_apikey_alone_is_enough(fake: FakePostgrest) -> None:
    response = httpx.post(
        f"{fake.rest_url}/rpc/t_whoami", json={}, headers={"apikey": SECRET_KEY}, timeout=10
    )

    assert response.json()["user"] == "service_role"


def test_unknown_keys_are_refused_by_the_gateway(fake: FakePostgrest) -> None:
    error = call_error(fake, "t_add", {"a": 1}, key="sb_secret_not-a-key-of-this-project")

    assert error.message == "Invalid API key"
    assert error.code is None
    assert fake.requests[-1].status == 401


def test_a_request_without_apikey_is_401(fake: FakePostgrest) -> None:
    response = httpx.post(
        f"{fake.rest_url}/rpc/t_add",
        json={"a": 1},
        headers={"Authorization": f"Bearer {fake.service_role_key}"},
        timeout=10,
    )

    assert response.status_code == 401
    assert assert_error_shape(response)["message"] == "No API key found in request"


# --- routes and negotiation -------------------------------------------------------------------


def test_other_routes_methods_schemas_and_media_types(fake: FakePostgrest) -> None:
    key = fake.service_role_key
    auth = {"apikey": key, "Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=fake.rest_url, headers=auth, timeout=10) as http:
        table = http.get("/meal_plans")
        delete = http.delete("/rpc/t_add")
        schema = http.post("/rpc/t_add", json={"a": 1}, headers={"Content-Profile": "private"})
        csv = http.post("/rpc/t_add", json={"a": 1}, headers={"Accept": "text/csv"})
        broken = http.post(
            "/rpc/t_add", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        outside = http.get(f"{fake.base_url}/auth/v1/user")

    assert (table.status_code, table.json()["code"]) == (404, "PGRST125")
    assert (delete.status_code, delete.json()["code"]) == (405, "PGRST101")
    assert (schema.status_code, schema.json()["code"]) == (406, "PGRST106")
    assert (csv.status_code, csv.json()["code"]) == (406, "PGRST107")
    assert (broken.status_code, broken.json()["code"]) == (400, "PGRST102")
    assert outside.status_code == 404
    for response in (table, delete, schema, csv, broken, outside):
        assert_error_shape(response)


def test_requests_are_recorded_with_keys_masked(fake: FakePostgrest) -> None:
    call(fake, "t_add", {"a": 5})

    (request,) = fake.requests
    assert (request.method, request.path, request.function) == (
        "POST",
        "/rest/v1/rpc/t_add",
        "t_add",
    )
    assert request.json() == {"a": 5}
    assert (request.role, request.status) == ("service_role", 200)
    assert fake.service_role_key not in request.headers["authorization"]
    assert request.headers["authorization"].startswith("Bearer eyJhbG...")
    assert fake.service_role_key not in request.headers["apikey"]
    assert fake.calls() == {"t_add": 1}


# --- faults -----------------------------------------------------------------------------------


def test_db_down_is_503_pgrst000_without_touching_the_database(fake: FakePostgrest) -> None:
    fake.inject("db_down", times=2)

    first = call_error(fake, "t_add_note", {"p_note": "lost"})
    second = post(fake, "t_add_note", {"p_note": "lost"})

    assert (first.code, first.message) == (
        "PGRST000",
        "Database connection error. Retrying the connection.",
    )
    assert second.status_code == 503
    assert fake.stats.transactions == 0
    assert call(fake, "t_add_note", {"p_note": "kept"}) == "kept"


def test_an_unreachable_database_is_503_pgrst000() -> None:
    with FakePostgrest("postgresql://postgres@127.0.0.1:1/nowhere", pool_timeout=0.3) as fake:
        response = post(fake, "t_add", {"a": 1})

    assert response.status_code == 503
    assert assert_error_shape(response)["code"] == "PGRST000"


def test_a_dropped_connection_surfaces_as_an_httpx_error(fake: FakePostgrest) -> None:
    fake.inject(PostgrestFault.drop_connection)

    with pytest.raises(httpx.RemoteProtocolError):
        call(fake, "t_add_note", {"p_note": "never"})

    assert fake.requests[-1].status is None
    assert call(fake, "t_note_count") == 0


def test_a_dropped_response_may_hide_a_commit(fake: FakePostgrest) -> None:
    fake.inject(PostgrestFault.drop_response)

    with pytest.raises(httpx.RemoteProtocolError):
        call(fake, "t_add_note", {"p_note": "committed"})
    retry = call_error(fake, "t_add_note", {"p_note": "committed"})

    assert retry.code == "23505"


def test_slow_answers_trip_the_clients_timeout(fake: FakePostgrest) -> None:
    fake.inject(PostgrestFault.slow, seconds=5)

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        call(fake, "t_add", {"a": 1}, timeout=0.3)

    assert time.monotonic() - started < 3
    assert fake.pending_faults == []


def test_a_bad_gateway_page_becomes_an_api_error_named_by_status(fake: FakePostgrest) -> None:
    fake.inject(PostgrestFault.bad_gateway)

    error = call_error(fake, "t_add", {"a": 1})

    assert (error.code, error.message) == ("502", "Bad Gateway")


def test_calls_run_concurrently_up_to_the_pool_size(fake: FakePostgrest) -> None:
    async def scenario() -> list[Any]:
        async with supabase_client(fake, fake.service_role_key) as client:
            calls = [client.rpc("t_sleep", {"p_seconds": 0.3}).execute() for _ in range(4)]
            return [response.data for response in await asyncio.gather(*calls)]

    started = time.monotonic()
    results = asyncio.run(scenario())

    assert results == [[]] * 4
    assert time.monotonic() - started < 1.2  # one after another: 1.2 s
    assert fake.stats.max_concurrent == 4


# --- tokens -----------------------------------------------------------------------------------


def test_keys_are_hs256_jwts_that_pyjwt_accepts(fake: FakePostgrest) -> None:
    jwt = pytest.importorskip("jwt")

    anon = jwt.decode(fake.anon_key, DEFAULT_JWT_SECRET, algorithms=["HS256"])
    user = jwt.decode(
        fake.user_jwt(USER_ID), DEFAULT_JWT_SECRET, algorithms=["HS256"], audience="authenticated"
    )
    by_pyjwt = jwt.encode({"role": "anon", "n": 1}, DEFAULT_JWT_SECRET, algorithm="HS256")

    assert (anon["role"], anon["iss"]) == ("anon", "supabase")
    assert (
        jwt.decode(fake.service_role_key, DEFAULT_JWT_SECRET, algorithms=["HS256"])["role"]
        == "service_role"
    )
    assert (user["role"], user["sub"]) == ("authenticated", str(USER_ID))
    assert verify_jwt(by_pyjwt, DEFAULT_JWT_SECRET) == {"role": "anon", "n": 1}


def test_verify_jwt_checks_the_time_claims_with_skew() -> None:
    now = 1_800_000_000
    secret = DEFAULT_JWT_SECRET

    assert verify_jwt(make_jwt({"exp": now - 29}, secret), secret, now=now) == {"exp": now - 29}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"exp": now - 31}, "JWT expired"),
        ({"nbf": now + 31}, "JWT not yet valid"),
        ({"iat": now + 31}, "JWT issued at future"),
        ({"exp": "soon"}, "The JWT 'exp' claim must be a number"),
    ]
    for claims, message in cases:
        with pytest.raises(JwtError) as caught:
            verify_jwt(make_jwt(claims, secret), secret, now=now)
        assert (caught.value.code, caught.value.message) == ("PGRST303", message)
    unsigned = make_jwt({}, secret).rsplit(".", 1)[0] + "."
    with pytest.raises(JwtError, match="No suitable key"):
        verify_jwt(unsigned, secret)
    header = json.dumps({"alg": "none"}).encode()
    with pytest.raises(JwtError, match="unsupported encoding algorithm"):
        verify_jwt(f"{_b64(header)}.{_b64(b'{}')}.", secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
