"""A claim's cost beside a backlog of a job type it does not handle. Prints JSON.

    python -m scripts.bench.claim_backlog [--backlog 100000] [--repeats 50]

A worker that runs meal plans and pings shares ``background_jobs`` with every other job type.
Here another type's backlog (its workers down, say) is older than the worker's own jobs, so it
sits first in claim order. The figure is the median wall time of one claim of 10 jobs of the
worker's own types (``mealworker_claim_jobs``, rolled back so that every repeat sees the same
queue), with no backlog and with ``--backlog`` jobs of the other type, for the schema as
shipped and for the claim as it was before ``20240111000000_claim_by_type.sql`` (one index in
claim order, the job type a filter), in two databases, claims alternated. The ratio that matters
is each schema's "with backlog / without".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import psycopg

from scripts.bench.common import fresh_database, server_description

MIGRATIONS = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
CLAIM = (
    "select count(*) from public.mealworker_claim_jobs("
    "'bench', array['ping', 'generate_meal_plan'], 10, 60)"
)


def claim_before_by_type() -> list[str]:
    """The statements that put back the claim of the migration before 20240111."""
    text = (MIGRATIONS / "20240109000000_event_fast_path.sql").read_text()
    start = text.index("create or replace function public.mealworker_claim_jobs(")
    end = text.index("$$;", start) + 2
    return [
        "create index background_jobs_claim_idx on public.background_jobs"
        " (priority desc, run_at, id) where status = 'pending'",
        text[start:end],
        "drop index public.background_jobs_claim_by_type_idx",
    ]


def add_jobs(conn: psycopg.Connection[tuple[object, ...]], job_type: str, count: int) -> None:
    conn.execute(
        "insert into public.background_jobs (job_type, payload, run_at)"
        " select %s, '{}', now() - make_interval(secs => g) from generate_series(1, %s) g",
        (job_type, count),
    )
    conn.execute("vacuum analyze public.background_jobs")


def claim_ms(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        row = conn.execute(CLAIM).fetchone()
        elapsed = time.perf_counter() - started
    assert row is not None
    assert row[0] == 10, row
    return elapsed * 1000


def measure(urls: dict[str, str], backlog: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median claim ms: {schema: {"no_backlog": ms, "backlog": ms}}; one database a schema."""
    figures: dict[str, dict[str, list[float]]] = {
        schema: {"no_backlog": [], "backlog": []} for schema in urls
    }
    conns = {schema: psycopg.connect(url, autocommit=True) for schema, url in urls.items()}
    try:
        for conn in conns.values():
            add_jobs(conn, "ping", 1000)
        for phase in ("no_backlog", "backlog"):
            if phase == "backlog":
                for conn in conns.values():
                    add_jobs(conn, "someone_elses", backlog)
            for _ in range(repeats):
                for schema, conn in conns.items():
                    figures[schema][phase].append(claim_ms(conn))
    finally:
        for conn in conns.values():
            conn.close()
    return {
        schema: {phase: round(statistics.median(values), 3) for phase, values in phases.items()}
        for schema, phases in figures.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    with fresh_database() as shipped, fresh_database() as before:
        with psycopg.connect(before, autocommit=True) as conn, conn.transaction():
            for statement in claim_before_by_type():
                conn.execute(statement)
        medians = measure(
            {"as_shipped": shipped, "before_claim_by_type": before}, args.backlog, args.repeats
        )
    print(
        json.dumps(
            {
                "benchmark": "claim_backlog",
                "database": server_description(),
                "backlog_of_another_type": args.backlog,
                "claim_of_10_median_ms": medians,
                "backlog_over_no_backlog": {
                    schema: round(m["backlog"] / m["no_backlog"], 2)
                    for schema, m in medians.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
