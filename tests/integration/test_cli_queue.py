"""``enqueue``, ``run-job``, ``work --until-empty`` and ``demo`` through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app
from tests.conftest import OPENAI_TEST_KEY
from tests.fakes.openai_server import FakeOpenAI, Fault

runner = CliRunner()


def invoke(url: str, *args: str, **env: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"DATABASE_URL": url, **env})
    return result.exit_code, result.stdout, result.stderr


def job_status(url: str, job_id: int) -> tuple[str, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select status, attempts from public.background_jobs where id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def test_enqueue_then_run_job_completes_it(database_url: str) -> None:
    code, out, _ = invoke(database_url, "enqueue", "--days", "2", "--diet", "vegan", "--json")
    assert code == 0
    (queued,) = json.loads(out)
    code, out, err = invoke(database_url, "run-job", str(queued["job_id"]))
    assert code == 0, err
    assert f"job {queued['job_id']} completed" in out
    assert job_status(database_url, queued["job_id"]) == ("completed", 1)


def test_run_job_exit_codes(database_url: str) -> None:
    code, _, err = invoke(database_url, "run-job", "999999")
    assert code == 1  # an unknown id exits 1, as with cancel and requeue
    assert "no job 999999" in err
    code, out, _ = invoke(database_url, "enqueue", "--days", "1", "--json")
    job_id = json.loads(out)[0]["job_id"]
    assert invoke(database_url, "run-job", str(job_id))[0] == 0
    code, _, err = invoke(database_url, "run-job", str(job_id))
    assert code == 1
    assert "it is completed; use --force" in err
    code, _, _ = invoke(database_url, "run-job", str(job_id), "--force")
    assert code == 0
    assert job_status(database_url, job_id) == ("completed", 1)


def test_run_job_reports_a_failure_with_exit_1(database_url: str, fake_openai: FakeOpenAI) -> None:
    code, out, _ = invoke(database_url, "enqueue", "--days", "1", "--json")
    job_id = json.loads(out)[0]["job_id"]
    fake_openai.inject(Fault.insufficient_quota)
    code, _, err = invoke(
        database_url,
        "run-job",
        str(job_id),
        OPENAI_API_KEY=OPENAI_TEST_KEY,
        OPENAI_BASE_URL=fake_openai.base_url,
    )
    assert code == 1
    assert "no quota left" in err
    assert "(now failed)" in err
    assert OPENAI_TEST_KEY not in err


def test_an_idempotency_key_makes_no_second_plan(database_url: str) -> None:
    args = ("enqueue", "--days", "1", "--idempotency-key", "req-1", "--json", "--user")
    user = "5b0c6d1e-2f55-4d4c-9f3e-0c3f6f1d2a77"
    first = json.loads(invoke(database_url, *args, user)[1])
    second = json.loads(invoke(database_url, *args, user)[1])
    assert first[0]["meal_plan_id"] == second[0]["meal_plan_id"]
    assert second[0]["created"] is False


def test_ping_jobs_and_work_until_empty(database_url: str) -> None:
    code, out, _ = invoke(database_url, "enqueue", "--type", "ping", "--count", "25", "--json")
    assert code == 0
    assert len(json.loads(out)) == 25
    code, _, err = invoke(database_url, "work", "--until-empty", "--concurrency", "10")
    assert code == 0, err
    assert "25 completed" in err


def test_work_until_empty_rescues_jobs_whose_worker_died_first(database_url: str) -> None:
    """A job left processing by a dead worker (its lease expired) is work to do: draining
    used to stop at 'no pending job' and exit 0 with the job still processing."""
    code, out, _ = invoke(database_url, "enqueue", "--type", "ping", "--count", "3", "--json")
    assert code == 0
    dead = int(json.loads(out)[0]["job_id"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("select * from public.mealworker_claim_job(%s, 'dead-worker', 60)", (dead,))
        conn.execute(
            "update public.background_jobs set lease_expires_at = now() - interval '1 second'"
            " where id = %s",
            (dead,),
        )
    code, _, err = invoke(database_url, "work", "--until-empty")
    assert code == 0, err
    assert "3 completed" in err
    assert job_status(database_url, dead) == ("completed", 2)


def test_a_bad_request_is_refused_before_anything_is_queued(database_url: str) -> None:
    code, _, err = invoke(database_url, "enqueue", "--calories", "900")
    assert code == 1
    assert "calories" in err
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select count(*) from public.background_jobs").fetchone()
    assert row == (0,)


def test_a_job_type_without_a_handler_is_refused(database_url: str) -> None:
    code, _, err = invoke(database_url, "work", "--until-empty", "--job-type", "resize")
    assert code == 1
    assert "no handler for job type resize" in err


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_runs_on_the_embedded_database(embedded_data_dir: Path) -> None:
    result = runner.invoke(app, ["demo"], env={"MEALWORKER_DATA_DIR": str(embedded_data_dir)})
    assert result.exit_code == 0, result.output
    assert "6 plans completed, 0 failed" in result.stderr
    assert "transport embedded" in result.stderr
    assert "Shopping list" in result.stdout


def test_work_runs_the_handlers_a_module_names(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new job type needs no change to mealworker: ``--handlers MODULE:ATTRIBUTE``."""
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # examples/ is importable from here
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "select * from public.mealworker_enqueue_job('count_words', %s::jsonb)",
            (json.dumps({"text": "one two two"}),),
        ).fetchone()
    assert row is not None
    job_id = int(row[0])
    spec = "examples.word_count:handlers"
    code, _, err = invoke(database_url, "work", "--until-empty", "--handlers", spec)
    assert code == 0, err
    assert job_status(database_url, job_id) == ("completed", 1)
    with psycopg.connect(database_url) as conn:
        result = conn.execute(
            "select result from public.background_jobs where id = %s", (job_id,)
        ).fetchone()
    assert result == ({"words": 3, "distinct": 2},)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("examples.word_count", "expected MODULE:ATTRIBUTE"),
        ("no_such_module_here:handlers", "cannot import no_such_module_here"),
        ("examples.word_count:JOB_TYPE", "must be a HandlerRegistry"),
    ],
)
def test_a_handlers_option_that_names_no_registry_is_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch, spec: str, says: str
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    code, _, err = invoke(database_url, "work", "--until-empty", "--handlers", spec)
    assert code == 1
    assert says in err
