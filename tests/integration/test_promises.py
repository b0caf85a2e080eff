"""What the operator commands promise: idempotency keys with and without a user, cancel that
says what it did, event names checked, run-job by meal plan id, labels that say what they count,
messages that fit the command."""

from __future__ import annotations

import json
import uuid

import pytest

from mealplan_cli.cli import app
from mealplan_cli.cli.tail import EVENTS
from tests.conftest import OPENAI_TEST_KEY
from tests.fakes.openai_server import FakeOpenAI, Fault
from tests.helpers.cli import cli, runner, sql


def enqueue(env: dict[str, str], *args: str) -> dict[str, object]:
    code, out, err = cli(env, "enqueue", "--days", "1", "--json", *args)
    assert code == 0, err
    (item,) = json.loads(out)
    assert isinstance(item, dict)
    return item


def test_an_idempotency_key_without_a_user_makes_no_second_plan(
    env: dict[str, str], database_url: str
) -> None:
    first = enqueue(env, "--idempotency-key", "nightly-7")
    second = enqueue(env, "--idempotency-key", "nightly-7")
    assert second["meal_plan_id"] == first["meal_plan_id"]
    assert second["job_id"] == first["job_id"]
    assert second["created"] is False
    # A user's key space is their own: the same key for a user is another plan.
    user = str(uuid.uuid4())
    mine = enqueue(env, "--idempotency-key", "nightly-7", "--user", user)
    assert mine["meal_plan_id"] != first["meal_plan_id"]
    assert enqueue(env, "--idempotency-key", "nightly-7", "--user", user)["created"] is False
    assert sql(database_url, "select count(*) from public.meal_plans") == [(2,)]
    code, out, _ = cli(env, "enqueue", "--days", "1", "--idempotency-key", "nightly-7")
    assert code == 0
    assert "already queued with this key" in out


def jobs_in_every_state(url: str) -> dict[str, int]:
    """Five ping jobs: pending, processing, completed, failed and cancelled."""
    ids = [
        int(str(r[0]))
        for r in sql(
            url,
            "select * from public.mealworker_enqueue_jobs(p_job_type => 'ping', "
            "p_payloads => '[{}, {}, {}, {}, {}]'::jsonb)",
        )
    ]
    claimed = sql(url, "select id, lease_token from public.mealworker_claim_jobs('w', '{ping}', 3)")
    (done_id, done_token), (failed_id, failed_token), (running_id, _) = sorted(claimed)
    sql(
        url,
        "select public.mealworker_complete_jobs(array[%s]::bigint[], array[%s]::uuid[], "
        "array['{}'::jsonb])",
        done_id,
        done_token,
    )
    sql(url, "select public.mealworker_fail_job(%s, %s, 'boom', false)", failed_id, failed_token)
    pending, cancelled = ids[3], ids[4]
    sql(url, "select * from public.mealworker_cancel_jobs(array[%s]::bigint[])", cancelled)
    return {
        "pending": pending,
        "processing": int(str(running_id)),
        "completed": int(str(done_id)),
        "failed": int(str(failed_id)),
        "cancelled": cancelled,
    }


def test_cancel_says_what_it_did_and_fails_when_it_could_not(
    env: dict[str, str], database_url: str
) -> None:
    job = jobs_in_every_state(database_url)
    code, out, err = cli(env, "cancel", str(job["pending"]), str(job["processing"]))
    assert code == 0, err
    assert f"job {job['pending']}: cancelled" in out
    assert f"job {job['processing']}: cancel requested; its worker stops it" in out

    code, out, err = cli(env, "cancel", str(job["cancelled"]))
    assert code == 0
    assert out.strip() == f"job {job['cancelled']}: already cancelled"

    code, out, err = cli(env, "cancel", str(job["completed"]))
    assert code == 1
    assert f"job {job['completed']} was not cancelled: it is already completed" in err
    assert sql(database_url, "select status from background_jobs where id = %s", job["completed"])[
        0
    ] == ("completed",)

    code, out, err = cli(env, "cancel", str(job["failed"]), "424242", "--json")
    assert code == 1
    outcomes = {row["job_id"]: row["outcome"] for row in json.loads(out)}
    assert outcomes == {job["failed"]: "finished", 424242: "not_found"}


def test_tail_refuses_an_unknown_event_naming_the_valid_ones(env: dict[str, str]) -> None:
    code, out, err = cli(env, "tail", "--no-follow", "--event", "exploded")
    assert code == 2
    assert "unknown event 'exploded'" in err
    assert all(name in err for name in EVENTS)
    assert out == ""


def test_run_job_takes_the_meal_plan_id_the_app_knows(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    queued = enqueue(env)
    code, out, err = cli(env, "run-job", str(queued["meal_plan_id"]))
    assert code == 0, err
    assert f"job {queued['job_id']} completed" in out
    code, _, err = cli(env, "run-job", str(uuid.uuid4()))
    assert code == 1  # an unknown id exits 1 everywhere; 2 is a malformed one
    assert "no job for meal plan" in err
    code, _, err = cli(env, "run-job", "tomorrow")
    assert code == 2
    assert "neither a job id (a number) nor a meal plan id (a uuid)" in " ".join(err.split())


def test_stats_counts_openai_only_for_plans_that_called_it(
    env: dict[str, str], database_url: str
) -> None:
    plans: list[dict[str, dict[str, float]]] = [
        {"usage": {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0}},
        {"usage": {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0}},
        {"usage": {"calls": 3, "input_tokens": 900, "output_tokens": 300, "cost_usd": 0.002}},
    ]
    for _ in plans:
        enqueue(env)
    claimed = sql(
        database_url,
        "select id, lease_token from public.mealworker_claim_jobs('w', '{generate_meal_plan}', 3)",
    )
    for (job_id, token), result in zip(sorted(claimed), plans, strict=True):
        sql(
            database_url,
            "select public.mealworker_complete_jobs(array[%s]::bigint[], array[%s]::uuid[], "
            "array[%s::jsonb])",
            job_id,
            token,
            json.dumps({"plan": {"days": []}, **result}),
        )
    _, out, _ = cli(env, "stats", "--json")
    data = json.loads(out)
    assert data["plans_24h"] == 3
    assert data["openai_24h"]["plans"] == 1
    assert data["openai_24h"]["input_tokens"] == 900
    _, out, _ = cli(env, "stats")
    text = " ".join(out.split())
    assert "│ meal plans completed, 24h │ 3 │" in text
    assert "│ OpenAI usage, 24h │ 1 plan that called it," in text
    assert "900 in / 300 out" in text


def test_requeue_says_job_in_the_singular(env: dict[str, str], database_url: str) -> None:
    job = jobs_in_every_state(database_url)
    code, out, _ = cli(env, "requeue", "--failed", "--dry-run")
    assert code == 0
    assert "would requeue 1 job" in out
    assert "1 jobs" not in out
    assert job["failed"]


def test_generate_never_promises_a_retry(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_MAX_ATTEMPTS", "1")
    fake_openai.inject(Fault.server_error, times=20)
    result = runner.invoke(app, ["generate", "--days", "1", "--planner", "openai"])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "OpenAI unavailable after 1 attempt (" in message
    assert "retried later" not in message
    assert "try again in a minute" in message


def test_requeue_keeps_a_completed_plan_unless_forced(
    env: dict[str, str], database_url: str
) -> None:
    queued = enqueue(env)
    code, _, err = cli(env, "run-job", str(queued["job_id"]))
    assert code == 0, err
    plan_of = "select status, plan is not null from public.meal_plans where id = %s"
    assert sql(database_url, plan_of, queued["meal_plan_id"]) == [("completed", True)]

    for dry_run in ("--dry-run", None):
        args = [a for a in ("requeue", str(queued["meal_plan_id"]), dry_run) if a]
        code, out, err = cli(env, *args)
        assert code == 1
        assert f"job {queued['job_id']} was not requeued: it is completed" in " ".join(err.split())
        assert "--force" in err
        assert out == ""
    assert sql(database_url, plan_of, queued["meal_plan_id"]) == [("completed", True)]

    code, out, err = cli(env, "requeue", "--force", str(queued["job_id"]))
    assert code == 0, err
    assert "requeued 1 job" in out
    assert sql(database_url, plan_of, queued["meal_plan_id"]) == [("pending", False)]
    code, _, err = cli(env, "requeue", "--failed", "--force")
    assert code == 2
    assert "--force applies to jobs named by id" in " ".join(err.split())
