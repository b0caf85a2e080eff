"""The worker's resident memory: idle, then after each of several 20,000-job rounds.

``mealworker work`` runs as a real process; its RSS is read from /proc when it is idle and after
every round has drained. Memory must not grow with the number of jobs. Prints JSON.

    python -m scripts.bench.worker_memory [--rounds 3] [--jobs 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from mealplan_cli.settings.config import Settings
from scripts.bench.common import fresh_database, server_description


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select count(*) from public.background_jobs where status <> 'completed'"
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=500)
    args = parser.parse_args()
    settings_names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in settings_names}
    with fresh_database() as url:
        env.update({"DATABASE_URL": url, "LOG_LEVEL": "WARNING"})
        command = [sys.executable, "-m", "mealplan_cli", "work", "--job-type", "ping"]
        command += ["--concurrency", str(args.concurrency)]
        worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            time.sleep(4)
            idle = rss_mb(worker.pid)
            rounds = []
            for _ in range(args.rounds):
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(
                        "select public.mealworker_enqueue_jobs(p_job_type => 'ping', "
                        "p_payloads => (select jsonb_agg('{}'::jsonb) "
                        "from generate_series(1, %s)))",
                        (args.jobs,),
                    )
                while pending(url):
                    time.sleep(0.2)
                time.sleep(1)
                rounds.append(rss_mb(worker.pid))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    print(
        json.dumps(
            {
                "benchmark": "worker_memory",
                "database": server_description(),
                "jobs_per_round": args.jobs,
                "concurrency": args.concurrency,
                "idle_rss_mb": idle,
                "rss_mb_after_each_round": rounds,
                "goal_idle_rss_mb_under": 60,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
