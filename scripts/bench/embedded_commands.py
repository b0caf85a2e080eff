"""How long a CLI command takes on the embedded database: the first (which starts the server),
the later ones (which reuse it), and a start after ``db stop``, beside the interpreter's floor.

Every figure is a real ``mealworker stats --json`` process in a fresh data folder, timed from
spawn to exit. The later commands run interleaved with two floors, ``python -c pass`` and
``python -c "import mealplan_cli.cli"`` (the CLI's imports alone), so that load drifting on a
shared machine affects them alike; each is reported as the median wall time and the median CPU
time (user + system) of the process, the latter far less sensitive to other load. The children
run with the bytecode cache on, as an installed package does (``PYTHONDONTWRITEBYTECODE`` is
dropped from their environment). The server is stopped and the folder removed at the end.
Prints one JSON object.

    python -m scripts.bench.embedded_commands [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mealplan_cli.core.db.embedded import stop_server


def _environment(data_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONDONTWRITEBYTECODE"
        and name not in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY")
    }
    return {**env, "MEALWORKER_DATA_DIR": str(data_dir)}


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=300)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
        first, first_cpu = _timed(command, env)
        samples: dict[str, list[tuple[float, float]]] = {"later": [], "pass": [], "import": []}
        for _ in range(args.runs):  # interleaved, so that load drifting affects all alike
            samples["later"].append(_timed(command, env))
            samples["pass"].append(_timed([python, "-c", "pass"], env))
            samples["import"].append(_timed([python, "-c", "import mealplan_cli.cli"], env))
        restarts = []
        for _ in range(3):
            stop_server(data_dir)
            restarts.append(_timed(command, env))
    finally:
        stop_server(data_dir)
        shutil.rmtree(folder, ignore_errors=True)

    def median(runs: list[tuple[float, float]], index: int) -> float:
        return round(statistics.median(run[index] for run in runs), 3)

    later, floor, imports = (median(samples[k], 0) for k in ("later", "pass", "import"))
    later_cpu, floor_cpu, imports_cpu = (median(samples[k], 1) for k in ("later", "pass", "import"))
    result: dict[str, Any] = {
        "command": "mealworker stats --json (embedded database)",
        "runs": args.runs,
        "wall_s": {
            "first_command": round(first, 3),
            "later_command_median": later,
            "after_db_stop_median": median(restarts, 0),
            "python_pass_median": floor,
            "cli_import_median": imports,
        },
        "cpu_s": {
            "first_command": round(first_cpu, 3),
            "later_command_median": later_cpu,
            "after_db_stop_median": median(restarts, 1),
            "python_pass_median": floor_cpu,
            "cli_import_median": imports_cpu,
        },
        "first_over_later_wall": round(first / later, 1),
        "later_over_python_pass_wall": round(later / floor, 1),
        "later_over_cli_import_wall": round(later / imports, 2),
        "later_minus_cli_import_cpu_s": round(later_cpu - imports_cpu, 3),
        "goal_later_below_s": 0.5,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
