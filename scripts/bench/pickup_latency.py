"""Pickup latency: how long a job waits between its producer's insert and its handler's start.

The method of the peer figures in the queue issue: an idle worker, 200 jobs enqueued one at a
time 20 ms apart by a separate producer (its own connection and thread), latency measured from
just before the producer's insert (commit included) to the handler's first line. Run with
LISTEN/NOTIFY wake-ups and with plain polling every 1,000 ms, side by side. Prints JSON.

    python -m scripts.bench.pickup_latency [--jobs 200] [--gap-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import threading
import time
from typing import Any

import psycopg

from mealplan_cli.handlers import HandlerRegistry, JobContext
from mealplan_cli.queue import PING_JOB, ClaimedJob
from scripts.bench.common import fresh_database, run_worker, server_description


def produce(url: str, jobs: int, gap: float, enqueued: dict[int, float]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(jobs):
            started = time.perf_counter()
            row = conn.execute(
                "select public.mealworker_enqueue_jobs(p_job_type => 'ping', "
                "p_payloads => '[{}]'::jsonb)"
            ).fetchone()
            assert row is not None
            enqueued[int(row[0])] = started
            time.sleep(gap)


async def measure(url: str, jobs: int, gap: float, *, listen: bool) -> list[float]:
    handled: dict[int, float] = {}
    enqueued: dict[int, float] = {}
    all_handled = asyncio.Event()

    async def record(job: ClaimedJob, context: JobContext) -> None:
        handled[job.id] = time.perf_counter()
        if len(handled) == jobs:
            all_handled.set()

    handlers = HandlerRegistry()
    handlers.register(PING_JOB, record)
    worker = asyncio.create_task(
        run_worker(url, handlers, stop_after=all_handled, listen=listen, poll_interval=1.0)
    )
    await asyncio.sleep(1.5)  # an idle worker: registered, listening, between polls
    producer = threading.Thread(target=produce, args=(url, jobs, gap, enqueued))
    producer.start()
    await worker
    producer.join()
    return [(handled[i] - enqueued[i]) * 1000 for i in enqueued]


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 2),
        "max_ms": round(ordered[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    args = parser.parse_args()
    logging.getLogger("mealworker").setLevel(logging.WARNING)
    results: dict[str, Any] = {}
    for label, listen in (("listen", True), ("polling_1000ms", False)):
        with fresh_database() as url:
            latencies = asyncio.run(measure(url, args.jobs, args.gap_ms / 1000, listen=listen))
        results[label] = summary(latencies)
    print(
        json.dumps(
            {
                "benchmark": "pickup_latency",
                "database": server_description(),
                "jobs": args.jobs,
                "gap_ms": args.gap_ms,
                **results,
                "goal_listen": {"p50_ms_under": 4, "p99_ms_under": 7},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
