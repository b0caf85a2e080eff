"""How long a CLI command takes on the embedded database: the first (which starts the server),
the later ones (which reuse it), and a start after ``db stop``, beside the interpreter's floor.

Every figure is a real ``mealworker stats --json`` process in a fresh data folder, timed from
spawn to exit; the floors are ``python -c pass`` and ``python -c "import mealplan_cli.cli"`` (the
CLI's imports alone), so the ratios say what the database part costs on a noisy machine. The
children run with the bytecode cache on, as an installed package does (``PYTHONDONTWRITEBYTECODE``
is dropped from their environment). The server is stopped and the folder removed at the end.
Prints one JSON object.

    python -m scripts.bench.embedded_commands [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mealplan_cli.db.embedded import stop_server


def _environment(data_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONDONTWRITEBYTECODE"
        and name not in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY")
    }
    return {**env, "MEALWORKER_DATA_DIR": str(data_dir)}


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=300)
    return time.perf_counter() - started


def _median(command: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(_timed(command, env) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs behind each median")
    args = parser.parse_args()
    python = sys.executable
    command = [python, "-m", "mealplan_cli", "stats", "--json"]
    folder = Path(tempfile.mkdtemp(prefix="mealworker-bench-embedded-"))
    data_dir = folder / "data"
    env = _environment(data_dir)
    try:
        _timed([python, "-c", "import mealplan_cli.cli"], env)  # writes the bytecode cache
        first = _timed(command, env)
        later = _median(command, env, args.runs)
        restarts = []
        for _ in range(3):
            stop_server(data_dir)
            restarts.append(_timed(command, env))
        floor = _median([python, "-c", "pass"], env, args.runs)
        imports = _median([python, "-c", "import mealplan_cli.cli"], env, args.runs)
    finally:
        stop_server(data_dir)
        shutil.rmtree(folder, ignore_errors=True)
    restart = statistics.median(restarts)
    result: dict[str, Any] = {
        "command": "mealworker stats --json (embedded database)",
        "runs": args.runs,
        "first_command_s": round(first, 3),
        "later_command_median_s": round(later, 3),
        "after_db_stop_median_s": round(restart, 3),
        "python_pass_median_s": round(floor, 3),
        "cli_import_median_s": round(imports, 3),
        "later_minus_cli_import_s": round(later - imports, 3),
        "first_over_later": round(first / later, 1),
        "later_over_python_pass": round(later / floor, 1),
        "later_over_cli_import": round(later / imports, 2),
        "goal_later_below_s": 0.5,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
