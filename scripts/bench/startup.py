"""Start-up: cold ``mealworker --help``, spawn to "ready to claim", idle RSS, against the floor.

Each figure is the median of ``--runs`` fresh processes; ``python -c pass`` is measured in the
same run as the floor, and each figure is also given as a ratio to it. The worker runs
``work --job-type ping`` against a fresh migrated database (``MEALWORKER_TEST_DATABASE_URL``'s
server, else an embedded one); "ready" is its "ready to claim" log line. Prints JSON.

    python -m scripts.bench.startup [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mealplan_cli.settings.config import Settings
from scripts.bench.common import fresh_database, server_description


def clean_env() -> dict[str, str]:
    names = {name.upper() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k not in names}


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def worker_start(url: str, env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawn to "ready to claim", and the idle worker's RSS in MB."""
    env = {**env, "DATABASE_URL": url, "LOG_LEVEL": "INFO", "LOG_DIR": "/tmp/mealworker-bench"}
    command = [sys.executable, "-m", "mealplan_cli", "work", "--job-type", "ping"]
    started = time.perf_counter()
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert worker.stdout is not None
        for raw in worker.stdout:
            if b"ready to claim" in raw:
                ready = time.perf_counter() - started
                break
        else:
            raise SystemExit("the worker exited before it was ready")
        time.sleep(1.0)  # settle: the first claims and the heartbeat's first wait
        rss = rss_mb(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    return ready, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = clean_env()
    floor = [timed([sys.executable, "-c", "pass"], env) for _ in range(args.runs)]
    helps = [timed([sys.executable, "-m", "mealplan_cli", "--help"], env) for _ in range(args.runs)]
    with fresh_database() as url:
        starts = [worker_start(url, env) for _ in range(args.runs)]
    floor_s = statistics.median(floor)
    help_s = statistics.median(helps)
    ready_s = statistics.median(s[0] for s in starts)
    print(
        json.dumps(
            {
                "benchmark": "startup",
                "database": server_description(),
                "runs": args.runs,
                "python_c_pass_s": round(floor_s, 3),
                "help_s": round(help_s, 3),
                "help_over_floor": round(help_s / floor_s, 1),
                "work_ping_ready_s": round(ready_s, 3),
                "ready_over_floor": round(ready_s / floor_s, 1),
                "work_ping_idle_rss_mb": statistics.median(s[1] for s in starts),
                "goals": {"help_s_under": 0.3, "ready_s_under": 0.5, "idle_rss_mb_under": 45},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
