"""SIGTERM ends ``mealworker work`` with exit 0 in every state: while it imports, while it
starts, while its database is unreachable, and over REST with placeholder settings."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.processes import clean_environment, wait_until

pytestmark = pytest.mark.timeout(120)


def spawn(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], Path]:
    out = log.open("wb")
    command = [sys.executable, "-m", "mealplan_cli", "work", "--job-type", "ping"]
    process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return process, log


def env_with(**values: str) -> dict[str, str]:
    env = clean_environment()
    env.update({"LOG_LEVEL": "INFO", "POLL_INTERVAL_MS": "100", **values})
    return env


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM yet (``SigCgt`` in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.parametrize("after", [0.0, 0.1, 0.3, 0.6, 1.0, 1.5])
def test_sigterm_during_start_up_exits_0(database_url: str, tmp_path: Path, after: float) -> None:
    """A signal this many seconds after the first line of mealworker's own code ran (before
    it, the interpreter itself is still booting and no program can handle a signal), whatever
    the process is doing then: importing, opening the pool, registering, claiming."""
    process, log = spawn(env_with(DATABASE_URL=database_url), tmp_path / "worker.log")
    wait_until(lambda: catches_sigterm(process.pid), 30, "the early signal handler")
    assert "transport" not in log.read_text(), "the handler must come before start-up"
    time.sleep(after)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_sigterm_while_the_database_is_unreachable_exits_0(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:9/postgres"
    process, log = spawn(env_with(DATABASE_URL=url), tmp_path / "worker.log")
    wait_until(lambda: log.read_text().count("database") >= 2, 60, "the outage, said twice")
    assert process.poll() is None, log.read_text()  # it keeps trying, and keeps saying so
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_sigterm_with_rest_placeholders_exits_0(tmp_path: Path) -> None:
    env = env_with(SUPABASE_URL="http://127.0.0.1:9", SUPABASE_SERVICE_ROLE_KEY="placeholder")
    process, log = spawn(env, tmp_path / "worker.log")
    wait_until(lambda: "database unavailable" in log.read_text(), 30, "the outage line")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
