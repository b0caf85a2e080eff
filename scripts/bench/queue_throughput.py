"""Queue throughput: 20,000 no-op (ping) jobs enqueued in bulk, then one worker drains them.

The method of the peer figures in the queue issue: time from worker start until all jobs are
done, median of 3, at the default concurrency and at a tuned one, plus the worker's resident
memory before and after (it must not grow with the number of jobs). Prints JSON.

    python -m scripts.bench.queue_throughput [--jobs 20000] [--runs 3] [--tuned 500]
        [--only-tuned] [--profile 25] [--timeline]

``--profile N`` also profiles the worker (cProfile, every run of every setting) and prints the
N functions with the most time of their own to stderr, the JSON staying alone on stdout.

``--timeline`` says, for each run, how the worker's database calls overlapped: how many claims
and completion batches it made, and for what share of the run a claim, a completion, or either
was on its way (sent and not yet answered, as the worker sees it: the database's time plus the
worker's own delay in reading the answer). It wraps the worker's ``Queue.claim_next`` and
``Queue.complete`` for the run (restored after), so the worker carries no tracing code.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import pstats
import statistics
import sys
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from mealplan_cli.core.db.postgres import PostgresDatabase
from mealplan_cli.core.queue import PING_JOB, Queue
from mealplan_cli.core.worker import rss_bytes
from mealplan_cli.settings.config import Settings
from scripts.bench.common import fresh_database, run_worker, server_description

T = TypeVar("T")


async def enqueue(url: str, jobs: int) -> None:
    db = await PostgresDatabase(url).open()
    try:
        queue = Queue(db)
        for start in range(0, jobs, 10_000):
            await queue.enqueue_jobs(PING_JOB, [{}] * min(10_000, jobs - start))
    finally:
        await db.close()


class Timeline:
    """When each of the worker's claims and completion writes was sent and answered."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, float]]] = {"claim_next": [], "complete": []}

    @contextmanager
    def installed(self) -> Iterator[None]:
        originals = {name: getattr(Queue, name) for name in self.calls}

        def timed(name: str) -> Any:
            call, spans = originals[name], self.calls[name]

            async def wrapper(queue: Queue, *args: Any, **kwargs: Any) -> Any:
                sent = time.perf_counter()
                try:
                    return await call(queue, *args, **kwargs)
                finally:
                    spans.append((sent, time.perf_counter()))

            return wrapper

        for name in self.calls:
            setattr(Queue, name, timed(name))
        try:
            yield
        finally:
            for name, call in originals.items():
                setattr(Queue, name, call)

    def summary(self, seconds: float) -> dict[str, Any]:
        claims, completions = self.calls["claim_next"], self.calls["complete"]
        return {
            "claims": len(claims),
            "completion_batches": len(completions),
            "share_with_a_claim_on_its_way": round(_covered(claims) / seconds, 3),
            "share_with_a_completion_on_its_way": round(_covered(completions) / seconds, 3),
            "share_with_either": round(_covered(claims + completions) / seconds, 3),
        }


def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of ``spans`` (overlaps counted once)."""
    total, reach, start = 0.0, None, 0.0
    for begin, end in sorted(spans):
        if reach is None or begin > reach:
            if reach is not None:
                total += reach - start
            start, reach = begin, end
        else:
            reach = max(reach, end)
    return total + (reach - start if reach is not None else 0.0)


async def one_run(url: str, jobs: int, concurrency: int, *, timeline: bool) -> dict[str, Any]:
    await enqueue(url, jobs)
    trace = Timeline() if timeline else None
    with trace.installed() if trace is not None else nullcontext():
        started = time.perf_counter()
        report = await run_worker(url, concurrency=concurrency)
        elapsed = time.perf_counter() - started
    if report.completed != jobs:
        raise SystemExit(f"expected {jobs} completions, got {report}")
    run: dict[str, Any] = {"seconds": round(elapsed, 3), "jobs_per_s": round(jobs / elapsed)}
    if trace is not None:
        run["timeline"] = trace.summary(elapsed)
    return run


def profiled(profiler: cProfile.Profile | None, run: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(run)``, under ``profiler`` when there is one (enqueueing included: it
    is a small part, and the profile says which lines are the queue's)."""
    if profiler is None:
        return asyncio.run(run)
    profiler.enable()
    try:
        return asyncio.run(run)
    finally:
        profiler.disable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tuned", type=int, default=500, help="Concurrency for the tuned run.")
    parser.add_argument("--only-tuned", action="store_true", help="Skip the default setting.")
    parser.add_argument("--profile", type=int, default=0, help="Print the top N to stderr.")
    parser.add_argument(
        "--timeline", action="store_true", help="How the claims and completions overlapped."
    )
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.profile else None
    logging.getLogger("mealworker").setLevel(logging.WARNING)
    default = Settings().max_concurrent_jobs
    results: dict[str, Any] = {}
    rss_before = rss_bytes()
    with fresh_database() as url:
        settings = [("default", default), ("tuned", args.tuned)]
        for label, concurrency in settings[1:] if args.only_tuned else settings:
            runs = [
                profiled(profiler, one_run(url, args.jobs, concurrency, timeline=args.timeline))
                for _ in range(args.runs)
            ]
            results[label] = {
                "concurrency": concurrency,
                "runs": runs,
                "median_jobs_per_s": statistics.median(r["jobs_per_s"] for r in runs),
            }
    rss_after = rss_bytes()
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
    print(
        json.dumps(
            {
                "benchmark": "queue_throughput",
                "database": server_description(),
                "jobs_per_run": args.jobs,
                **results,
                "goal_jobs_per_s_at_least": 8000,
                "process_rss_mb": {
                    "before": round((rss_before or 0) / 2**20, 1),
                    "after_all_runs": round((rss_after or 0) / 2**20, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
