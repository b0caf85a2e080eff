"""Database CPU per job: what PostgreSQL itself spends to claim and complete one no-op job, and
what it would spend if the product kept less per job. Prints JSON.

    python -m scripts.bench.sql_per_job [--jobs 30000] [--rounds 5] [--baseline DIR]

One connection drains the queue with ``mealworker_claim_next`` in batches of 500 (each call
completes the previous batch and claims the next, as a busy worker does), and the server
process's CPU time is read from /proc before and after: no Python worker, no network wait in
the figure. Three schemas, each in a fresh database per round, rounds interleaved (this machine
is noisy; medians and ratios, not single figures):

* ``as_shipped``: the migrations as they are;
* ``without_claim_and_completion_events``: no ``claimed``/``completed`` event rows;
* ``and_completed_jobs_deleted``: also a completion that deletes the job, as graphile-worker's.

The last two are not options the product offers: they price the two per-job records it keeps.
``--baseline DIR`` adds a fourth, ``baseline``: the migrations in DIR (another checkout's
``supabase/migrations``, e.g. main's), to price a change of the SQL in the same run. Besides the
CPU, the WAL each job writes (bytes, exact on any machine). The server must run on this machine
(its process's CPU is read from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from mealplan_cli.core.db.migrations import Migration, bundled_migrations
from scripts.bench.common import fresh_database, server_description

BATCH = 500

WITHOUT_EVENTS = "alter table public.background_jobs disable trigger background_jobs_events_update"
DELETING_COMPLETION = """
create or replace function public.mealworker_complete_jobs(
  p_job_ids bigint[], p_lease_tokens uuid[], p_results jsonb[]
)
returns setof bigint language sql volatile set search_path = '' as $$
  delete from public.background_jobs j
   using unnest(p_job_ids, p_lease_tokens) as i (job_id, lease_token)
   where j.id = i.job_id and j.lease_token = i.lease_token
  returning j.id
$$"""

SCHEMAS: dict[str, list[str]] = {
    "as_shipped": [],
    "without_claim_and_completion_events": [WITHOUT_EVENTS],
    "and_completed_jobs_deleted": [WITHOUT_EVENTS, DELETING_COMPLETION],
}


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_job(url: str, changes: list[str], jobs: int) -> tuple[float, float]:
    """Microseconds of server CPU, and bytes of WAL, per claimed and completed job."""
    with psycopg.connect(url, autocommit=True) as setup:
        for change in changes:
            setup.execute(change)
        for start in range(0, jobs, 5000):
            setup.execute(
                "select count(*) from public.mealworker_enqueue_jobs('ping', %s)",
                (Jsonb([{}] * min(5000, jobs - start)),),
            )
        setup.execute("vacuum analyze public.background_jobs")
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        held: list[tuple[int, object]] = []
        completed = 0
        wal_before = conn.execute("select pg_current_wal_insert_lsn()").fetchone()
        before = process_cpu_seconds(pid)
        while True:
            rows = conn.execute(
                "select id, lease_token, completed from public.mealworker_claim_next("
                "'bench', array['ping'], %s, 60, %s::bigint[], %s::uuid[], %s::jsonb[])",
                (BATCH, [h[0] for h in held], [h[1] for h in held], [None] * len(held)),
            ).fetchall()
            completed += sum(1 for row in rows if row[2] is not None)
            held = [(row[0], row[1]) for row in rows if row[2] is None]
            if not held:
                break
        spent = process_cpu_seconds(pid) - before
        wal = conn.execute(
            "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", wal_before
        ).fetchone()
    if completed != jobs:
        raise SystemExit(f"expected {jobs} completions, got {completed}")
    assert wal is not None
    return spent * 1e6 / jobs, float(wal[0]) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="Also measure the schema the migrations in DIR make (another checkout's).",
    )
    args = parser.parse_args()
    schemas = dict(SCHEMAS)
    migrations: dict[str, list[Migration] | None] = dict.fromkeys(SCHEMAS)
    if args.baseline:
        schemas["baseline"] = []
        migrations["baseline"] = bundled_migrations(args.baseline)
    figures: dict[str, list[float]] = {name: [] for name in schemas}
    wal: dict[str, list[float]] = {name: [] for name in schemas}
    for round_number in range(args.rounds):
        order = list(schemas) if round_number % 2 == 0 else list(reversed(schemas))
        for name in order:
            with fresh_database(migrations[name]) as url:
                cpu, wal_bytes = cpu_per_job(url, schemas[name], args.jobs)
            figures[name].append(cpu)
            wal[name].append(wal_bytes)
    shipped = statistics.median(figures["as_shipped"])
    print(
        json.dumps(
            {
                "benchmark": "sql_per_job",
                "database": server_description(),
                "jobs_per_round": args.jobs,
                "batch": BATCH,
                "server_cpu_us_per_job": {
                    name: {
                        "median": round(statistics.median(values), 1),
                        "rounds": [round(v, 1) for v in values],
                        "ratio_to_as_shipped": round(statistics.median(values) / shipped, 2),
                    }
                    for name, values in figures.items()
                },
                "wal_bytes_per_job": {
                    name: round(statistics.median(values)) for name, values in wal.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
