"""The README's custom job type is a real file (examples/word_count.py), run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from typer.testing import CliRunner

from mealplan_cli.cli import app
from tests.helpers.processes import clean_environment

ROOT = Path(__file__).resolve().parents[2]


def rows(url: str) -> list[dict[str, object]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "select job_type, status, result from public.background_jobs order by id"
        ).fetchall()


def test_a_custom_job_type_from_the_cli_and_from_python(database_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    queued = runner.invoke(
        app,
        ["enqueue", "--type", "count_words", "--payload", '{"text": "a b a"}', "--json"],
        env=env,
    )
    assert queued.exit_code == 0, queued.output
    assert len(json.loads(queued.stdout)) == 1
    ping = runner.invoke(app, ["enqueue", "--type", "ping"], env=env)
    assert ping.exit_code == 0, ping.output
    bad = runner.invoke(app, ["enqueue", "--type", "count_words", "--payload", "[1]"], env=env)
    assert bad.exit_code != 0
    assert "JSON object" in bad.output

    process = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "word_count.py"), "x y z", "--until-empty"],
        env={**clean_environment(), "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "2 completed, 0 failed" in process.stdout
    assert rows(database_url) == [
        {"job_type": "count_words", "status": "completed", "result": {"words": 3, "distinct": 2}},
        # a worker with only this handler claims nothing else:
        {"job_type": "ping", "status": "pending", "result": None},
        {"job_type": "count_words", "status": "completed", "result": {"words": 3, "distinct": 3}},
    ]
