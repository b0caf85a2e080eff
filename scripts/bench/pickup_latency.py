"""Pickup latency: how long a job waits between its producer's insert and its handler's start.

The method of the peer figures in the queue issue: an idle worker, 200 jobs enqueued one at a
time 20 ms apart by a separate producer (its own connection and thread), latency measured from
just before the producer's insert (commit included) to the handler's first line. Run with
LISTEN/NOTIFY wake-ups and with plain polling every 1,000 ms, side by side. Prints JSON.

    python -m scripts.bench.pickup_latency [--jobs 200] [--gap-ms 20] [--trace]

``--trace`` also says where the milliseconds go on the LISTEN path: the median time from the
producer's call to the notification reaching the worker, from there to the claim being sent,
the claim's round trip, and from its answer to the handler's first line. It times the worker's
own queue calls from outside (wrapped here), so the worker carries no tracing code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import psycopg

from mealplan_cli.core.queue import PING_JOB, ClaimedJob, Queue
from mealplan_cli.handlers import HandlerRegistry, JobContext
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


class Trace:
    """Timestamps of the LISTEN path, taken by wrapping ``Queue.wait_for_jobs`` and
    ``Queue.claim_next`` (the worker's claim) for the run (restored after)."""

    def __init__(self) -> None:
        self.notified = 0.0
        self.steps: dict[int, tuple[float, float, float]] = {}
        """job id -> (notification seen, claim sent, claim answered)."""
        self.result: dict[str, Any] = {}

    @contextmanager
    def installed(self) -> Iterator[None]:
        wait_for_jobs, claim = Queue.wait_for_jobs, Queue.claim_next
        trace = self

        async def traced_wait(queue: Queue, wake: Callable[[], None]) -> None:
            def woken() -> None:
                trace.notified = time.perf_counter()
                wake()

            await wait_for_jobs(queue, woken)

        async def traced_claim(
            queue: Queue, *args: Any, **kwargs: Any
        ) -> tuple[set[int], list[ClaimedJob]]:
            notified, sent = trace.notified, time.perf_counter()
            written, jobs = await claim(queue, *args, **kwargs)
            answered = time.perf_counter()
            for job in jobs:
                trace.steps[job.id] = (notified, sent, answered)
            return written, jobs

        Queue.wait_for_jobs = traced_wait  # type: ignore[method-assign, assignment]
        Queue.claim_next = traced_claim  # type: ignore[method-assign, assignment]
        try:
            yield
        finally:
            Queue.wait_for_jobs = wait_for_jobs  # type: ignore[method-assign]
            Queue.claim_next = claim  # type: ignore[method-assign]

    def breakdown(self, enqueued: dict[int, float], handled: dict[int, float]) -> dict[str, Any]:
        parts: dict[str, list[float]] = {
            "call_to_notification": [],
            "notification_to_claim_sent": [],
            "claim_round_trip": [],
            "claim_answer_to_handler": [],
        }
        for job_id, (notified, sent, answered) in self.steps.items():
            if job_id not in enqueued or job_id not in handled or notified < enqueued[job_id]:
                continue  # claimed by a poll, or after an earlier job's notification
            stamps = (enqueued[job_id], notified, sent, answered, handled[job_id])
            for name, start, end in zip(parts, stamps, stamps[1:], strict=False):
                parts[name].append((end - start) * 1000)
        return {
            name: round(statistics.median(values), 3) if values else None
            for name, values in parts.items()
        } | {"traced_jobs": len(parts["claim_round_trip"])}


async def measure(
    url: str, jobs: int, gap: float, *, listen: bool, trace: Trace | None = None
) -> list[float]:
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
    if trace is not None:
        trace.result = trace.breakdown(enqueued, handled)
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
    parser.add_argument("--trace", action="store_true", help="where the LISTEN path's ms go")
    args = parser.parse_args()
    logging.getLogger("mealworker").setLevel(logging.WARNING)
    results: dict[str, Any] = {}
    for label, listen in (("listen", True), ("polling_1000ms", False)):
        trace = Trace() if args.trace and listen else None
        with fresh_database() as url, trace.installed() if trace else nullcontext():
            latencies = asyncio.run(
                measure(url, args.jobs, args.gap_ms / 1000, listen=listen, trace=trace)
            )
        results[label] = summary(latencies)
        if trace is not None:
            results[f"{label}_trace_p50_ms"] = trace.result
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
