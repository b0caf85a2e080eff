"""Who may do what: anon, two signed-in users and the service role, against every function
(through the PostgREST-compatible server, with real JWTs) and every table (as PostgREST runs a
request: ``set local role`` and the JWT claims in a transaction)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.postgrest_server import FakePostgrest
from tests.helpers.end_users import set_database

ALICE = uuid.UUID("00000000-0000-4000-8000-00000000a11c")
BOB = uuid.UUID("00000000-0000-4000-8000-0000000000b0")

QUEUE_FUNCTIONS: dict[str, dict[str, Any]] = {
    "mealworker_enqueue_meal_plan": {"p_request": {"days": 1}},
    "mealworker_enqueue_jobs": {"p_job_type": "ping", "p_payloads": [{}]},
    "mealworker_claim_jobs": {"p_worker_id": "w", "p_job_types": ["ping"], "p_limit": 1},
    "mealworker_claim_job": {"p_job_id": 1, "p_worker_id": "w"},
    "mealworker_get_job": {"p_job_id": 1},
    "mealworker_get_meal_plan": {"p_meal_plan_id": str(uuid.uuid4())},
    "mealworker_heartbeat": {
        "p_worker_id": "w",
        "p_job_ids": [],
        "p_lease_tokens": [],
        "p_lease_seconds": 30,
    },
    "mealworker_register_worker": {
        "p_worker_id": "w",
        "p_host": "h",
        "p_pid": 1,
        "p_version": "v",
        "p_max_jobs": 1,
        "p_job_types": ["ping"],
    },
    "mealworker_stop_worker": {"p_worker_id": "w"},
    "mealworker_report_progress": {
        "p_job_id": 1,
        "p_lease_token": str(uuid.uuid4()),
        "p_progress": {},
    },
    "mealworker_complete_jobs": {"p_job_ids": [], "p_lease_tokens": [], "p_results": []},
    "mealworker_fail_job": {
        "p_job_id": 1,
        "p_lease_token": str(uuid.uuid4()),
        "p_error": "e",
        "p_retryable": True,
    },
    "mealworker_release_jobs": {"p_worker_id": "w", "p_job_ids": [], "p_lease_tokens": []},
    "mealworker_requeue_stale": {},
    "mealworker_stale_jobs": {},
    "mealworker_recent_events": {},
    "mealworker_requeue_jobs": {"p_dry_run": True},
    "mealworker_cancel_jobs": {"p_job_ids": []},
    "mealworker_prune": {"p_finished_before": "2000-01-01T00:00:00Z", "p_dry_run": True},
    "mealworker_job_for_meal_plan": {"p_meal_plan_id": str(uuid.uuid4())},
    "mealworker_queue_stats": {},
    "mealworker_meal_plan_stats": {},
    "mealworker_events_since": {},
    "mealworker_image_cache_get": {"p_query": "dal"},
    "mealworker_image_cache_put": {"p_query": "dal", "p_photo": None},
    "mealworker_budget_take": {
        "p_key": "k",
        "p_model": "m",
        "p_tokens": 1,
        "p_usd": 0.001,
        "p_expires_ms": 1000,
    },
    "mealworker_budget_refund": {
        "p_key": "k",
        "p_model": "m",
        "p_tokens": 1,
        "p_reservation": str(uuid.uuid4()),
    },
    "mealworker_budget_learn": {
        "p_key": "k",
        "p_model": "m",
        "p_tokens_limit": 1000,
        "p_requests_limit": 10,
    },
    "mealworker_budget_refused": {"p_key": "k", "p_model": "m"},
    "mealworker_budget_waited": {"p_key": "k", "p_model": "m", "p_ms": 1},
    "mealworker_budget_stats": {},
    "mealworker_budget_spent": {
        "p_key": "k",
        "p_model": "m",
        "p_cost_usd": 0.001,
        "p_reservation": str(uuid.uuid4()),
    },
    "mealworker_defer_job": {
        "p_job_id": 1,
        "p_lease_token": str(uuid.uuid4()),
        "p_run_at": "2999-01-01T00:00:00Z",
        "p_reason": "later",
    },
    "mealworker_waiting_jobs": {},
    "mealworker_job_note": {
        "p_job_id": 1,
        "p_lease_token": str(uuid.uuid4()),
        "p_event": "budget_wait",
    },
    "mealworker_meal_plan_waiting": {
        "p_job_id": 1,
        "p_lease_token": str(uuid.uuid4()),
        "p_waiting": "daily OpenAI cap reached",
        "p_until": "2999-01-01T00:00:00Z",
    },
    "mealworker_budget_take_turn": {
        "p_key": "k",
        "p_model": "m",
        "p_tokens": 1,
        "p_waiter": str(uuid.uuid4()),
    },
    "mealworker_budget_leave": {"p_key": "k", "p_model": "m", "p_waiter": str(uuid.uuid4())},
    "mealworker_budget_waiters": {},
}
TABLES = (
    "meal_plans",
    "background_jobs",
    "background_job_events",
    "workers",
    "image_cache",
    "openai_budgets",
    "openai_spend",
    "openai_budget_waiters",
    "openai_budget_rounds",
    "openai_reservations",
)


@pytest.fixture
def server(database_url: str) -> Iterator[FakePostgrest]:
    with FakePostgrest(database_url) as fake:
        yield fake


def rpc(server: FakePostgrest, function: str, body: dict[str, Any], token: str | None) -> int:
    headers = {"apikey": server.anon_key}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(f"{server.rest_url}/rpc/{function}", json=body, headers=headers)
    return response.status_code


def callers(server: FakePostgrest) -> dict[str, str | None]:
    return {
        "anon": None,
        "alice": server.user_jwt(ALICE),
        "bob": server.user_jwt(BOB),
        "service_role": server.service_role_key,
    }


@pytest.mark.slow
@pytest.mark.parametrize("function", sorted(QUEUE_FUNCTIONS))
def test_queue_functions_belong_to_the_service_role(server: FakePostgrest, function: str) -> None:
    tokens = callers(server)
    outcomes = {
        who: rpc(server, function, QUEUE_FUNCTIONS[function], t) for who, t in tokens.items()
    }
    assert outcomes["anon"] == 401
    assert outcomes["alice"] == outcomes["bob"] == 403
    assert outcomes["service_role"] in (200, 204)


def test_request_and_cancel_belong_to_signed_in_owners(server: FakePostgrest) -> None:
    tokens = callers(server)
    body = {"request": {"days": 1}}
    assert rpc(server, "request_meal_plan", body, tokens["anon"]) == 401
    assert rpc(server, "request_meal_plan", body, tokens["service_role"]) == 403
    response = httpx.post(
        f"{server.rest_url}/rpc/request_meal_plan",
        json=body,
        headers={"apikey": server.anon_key, "Authorization": f"Bearer {tokens['alice']}"},
    )
    assert response.status_code == 200
    plan_id = response.json()
    cancel = {"meal_plan_id": plan_id}
    assert rpc(server, "cancel_meal_plan", cancel, tokens["anon"]) == 401
    assert rpc(server, "cancel_meal_plan", cancel, tokens["bob"]) == 404
    assert rpc(server, "cancel_meal_plan", cancel, tokens["alice"]) == 200


def test_anonymous_sign_ins_and_the_daily_cap_through_the_api(
    server: FakePostgrest, database_url: str
) -> None:
    anonymous = server.user_jwt(uuid.uuid4(), claims={"is_anonymous": True})
    response = httpx.post(
        f"{server.rest_url}/rpc/request_meal_plan",
        json={"request": {"days": 1}},
        headers={"apikey": server.anon_key, "Authorization": f"Bearer {anonymous}"},
    )
    assert response.status_code == 403
    assert "anonymous users cannot request meal plans" in response.json()["message"]
    assert "mealworker.allow_anonymous" in response.json()["hint"]

    set_database(database_url, "mealworker.max_plans_per_day", "1")
    set_database(database_url, "mealworker.allow_anonymous", "on")
    with FakePostgrest(database_url) as fresh:  # new connections see the settings
        token = fresh.user_jwt(uuid.uuid4(), claims={"is_anonymous": True})
        codes = [rpc(fresh, "request_meal_plan", {"request": {"days": 1}}, token) for _ in range(2)]
    assert codes == [200, 429]


def rows_visible(url: str, role: str, user: uuid.UUID | None, table: str) -> int | str:
    """How many rows ``role`` sees in ``table``, or "denied"."""
    with psycopg.connect(url) as conn:
        try:
            with conn.transaction():
                conn.execute(f"set local role {role}")
                claims = {"role": role, **({"sub": str(user)} if user else {})}
                conn.execute(
                    "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                )
                row = conn.execute(f"select count(*) from public.{table}").fetchone()
                return int(row[0]) if row else 0
        except psycopg.errors.InsufficientPrivilege:
            return "denied"


def test_tables_are_visible_only_as_intended(server: FakePostgrest, database_url: str) -> None:
    tokens = callers(server)
    for user in (ALICE, BOB):
        httpx.post(
            f"{server.rest_url}/rpc/request_meal_plan",
            json={"request": {"days": 1}},
            headers={
                "apikey": server.anon_key,
                "Authorization": f"Bearer {tokens['alice' if user == ALICE else 'bob']}",
            },
        ).raise_for_status()
    matrix = {
        (role, str(user), table): rows_visible(database_url, role, user, table)
        for role, user in (("anon", None), ("authenticated", ALICE), ("service_role", None))
        for table in TABLES
    }
    assert matrix == {
        ("anon", "None", "meal_plans"): "denied",
        ("anon", "None", "background_jobs"): "denied",
        ("anon", "None", "background_job_events"): "denied",
        ("anon", "None", "workers"): "denied",
        ("anon", "None", "image_cache"): "denied",
        ("anon", "None", "openai_budgets"): "denied",
        ("anon", "None", "openai_spend"): "denied",
        ("anon", "None", "openai_budget_waiters"): "denied",
        ("anon", "None", "openai_budget_rounds"): "denied",
        ("anon", "None", "openai_reservations"): "denied",
        ("authenticated", str(ALICE), "meal_plans"): 1,
        ("authenticated", str(ALICE), "background_jobs"): "denied",
        ("authenticated", str(ALICE), "background_job_events"): "denied",
        ("authenticated", str(ALICE), "workers"): "denied",
        ("authenticated", str(ALICE), "image_cache"): "denied",
        ("authenticated", str(ALICE), "openai_budgets"): "denied",
        ("authenticated", str(ALICE), "openai_spend"): "denied",
        ("authenticated", str(ALICE), "openai_budget_waiters"): "denied",
        ("authenticated", str(ALICE), "openai_budget_rounds"): "denied",
        ("authenticated", str(ALICE), "openai_reservations"): "denied",
        ("service_role", "None", "meal_plans"): 2,
        ("service_role", "None", "background_jobs"): 2,
        ("service_role", "None", "background_job_events"): 2,
        ("service_role", "None", "workers"): 0,
        ("service_role", "None", "image_cache"): 0,
        ("service_role", "None", "openai_budgets"): 0,
        ("service_role", "None", "openai_spend"): 0,
        ("service_role", "None", "openai_budget_waiters"): 0,
        ("service_role", "None", "openai_budget_rounds"): 0,
        ("service_role", "None", "openai_reservations"): 0,
    }
