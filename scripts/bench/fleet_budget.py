"""A fleet of workers against one OpenAI organisation's rate limit: what it costs, how long.

Starts its own loopback OpenAI that enforces a tokens- and requests-per-minute budget the way
OpenAI does (each request charged when it arrives: the prompt's estimate, its JSON schema
included, plus ``max_completion_tokens``; ``x-ratelimit-*`` headers; 429s and no
``retry-after`` when over), a fresh database (``MEALWORKER_TEST_DATABASE_URL``'s server, else an
embedded one), and W ``mealworker work`` processes with C jobs each over N plans on the OpenAI
planner. Prints one JSON object: plans completed, 429s per successful call, job retries,
tokens charged per plan (as the fake counted them), the drain time against the ideal
(tokens charged / TPM; the bucket starts full, so a short run can beat it), how long plans
took (from enqueue to completion and from claim to completion: the slowest, the median and the
spread; per user with ``--users``), and the budget's round trips per OpenAI call (counted by
PostgreSQL's ``track_functions``).

    python -m scripts.bench.fleet_budget --workers 3 --concurrency 4 --plans 40 --tpm 2000000
    python -m scripts.bench.fleet_budget --workers 10 --concurrency 4 --plans 40 --tpm 0

``--tpm 0`` is "no limit" (the fake still counts every charge). The simulated model answers
after ``--ttft`` seconds plus its answer's tokens at ``--tokens-per-second``; the defaults
keep a run to a minute or two on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from mealplan_cli.core.db.connect import open_database
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.plans import MealPlans
from mealplan_cli.ops.redact import SecretStr
from mealplan_cli.settings.config import Settings
from scripts.bench.common import fresh_database, server_description
from tests.fakes.meal_responder import CatalogResponder
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.rate_budget import RateBudget

API_KEY = "sk-bench-fleet"
MODEL = "gpt-4.1-mini"
NO_LIMIT = 10**12


def user_id(number: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mealworker-bench-user-{number}")


def owners(plans: int, users: int, heavy_share: float) -> list[int | None]:
    """Whose each plan is, in queue order: nobody's without users (each plan its own group);
    else user 0's for ``heavy_share`` of the plans, spread evenly through the queue, and the
    others' in turn."""
    if not users:
        return [None] * plans
    if heavy_share <= 0:
        return [number % users for number in range(plans)]
    found: list[int | None] = []
    others = 0
    for number in range(plans):
        if users == 1 or int((number + 1) * heavy_share) > int(number * heavy_share):
            found.append(0)
        else:
            found.append(1 + others % (users - 1))
            others += 1
    return found


async def enqueue(url: str, owned: list[int | None], days: int) -> None:
    settings = Settings(database_url=SecretStr(url))
    async with open_database(settings) as db:
        meal_plans = MealPlans(db)
        for number, owner in enumerate(owned):
            # Each plan its own request (a different calorie target).
            request = parse_request(
                {"days": days, "meals": "breakfast,lunch,dinner", "calories": 1800 + number * 10}
            )
            await meal_plans.enqueue(request, user_id=None if owner is None else user_id(owner))


def spread(seconds: list[float]) -> dict[str, float | None]:
    """The slowest, the median and the gap between the slowest and the fastest."""
    if not seconds:
        return {"max": None, "median": None, "spread": None}
    return {
        "max": round(max(seconds), 1),
        "median": round(statistics.median(seconds), 1),
        "spread": round(max(seconds) - min(seconds), 1),
    }


def waits(conn: psycopg.Connection[dict[str, Any]], users: int) -> dict[str, Any]:
    """How long the completed plans took: from enqueue (queue and budget) and from the last
    claim (mostly waits for the budget), also per user with ``--users``."""
    rows = conn.execute(
        "select mp.user_id,"
        " extract(epoch from j.finished_at - j.created_at)::float8 as total,"
        " extract(epoch from j.finished_at - j.started_at)::float8 as running"
        " from public.background_jobs j join public.meal_plans mp on mp.id = j.meal_plan_id"
        " where j.status = 'completed'"
    ).fetchall()
    found: dict[str, Any] = {
        "enqueue_to_done_seconds": spread([r["total"] for r in rows]),
        "claim_to_done_seconds": spread([r["running"] for r in rows]),
    }
    if users:
        names = {str(user_id(n)): f"user{n}" for n in range(users)}
        running: dict[str, list[float]] = {}
        for row in rows:
            running.setdefault(names[str(row["user_id"])], []).append(row["running"])
        found["claim_to_done_per_user"] = {
            name: {"plans": len(seconds), **spread(seconds)}
            for name, seconds in sorted(running.items())
        }
    return found


NESTED = {"mealworker_budget_take": "mealworker_budget_take_turn"}
"""Budget functions another one calls (not a round trip) when that other one exists."""


def budget_round_trips(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Calls of each budget function and their mean time, as PostgreSQL counted them
    (``track_functions``); nested calls included."""
    return {
        row["funcname"]: {
            "calls": int(row["calls"]),
            "mean_ms": round(row["total_time"] / max(row["calls"], 1), 3),
        }
        for row in conn.execute(
            "select funcname, calls, total_time from pg_catalog.pg_stat_user_functions"
            " where funcname like 'mealworker_budget%' order by funcname"
        )
    }


def round_trips(calls: dict[str, dict[str, float]]) -> int:
    """The budget functions the workers called themselves: one round trip each."""
    return int(
        sum(
            c["calls"]
            for name, c in calls.items()
            if name != "mealworker_budget_waiters" and NESTED.get(name) not in calls
        )
    )


def outcome(url: str, users: int = 0) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        counts = {
            row["status"]: row["n"]
            for row in conn.execute(
                "select status, count(*) as n from public.meal_plans group by status"
            )
        }
        events = {
            row["event"]: row["n"]
            for row in conn.execute(
                "select event, count(*) as n from public.background_job_events group by event"
            )
        }
        usage = conn.execute(
            "select coalesce(sum((usage->>'charged_tokens')::bigint), 0) as charged,"
            " coalesce(sum((usage->>'input_tokens')::bigint), 0) as input,"
            " coalesce(sum((usage->>'cached_tokens')::bigint), 0) as cached,"
            " coalesce(sum((usage->>'output_tokens')::bigint), 0) as output,"
            " coalesce(sum((usage->>'calls')::bigint), 0) as calls,"
            " coalesce(sum((usage->>'rate_limited')::bigint), 0) as rate_limited"
            " from public.meal_plans where status = 'completed'"
        ).fetchone()
        most = conn.execute("select max(attempts) as n from public.background_jobs").fetchone()
        timing = waits(conn, users)
        trips = budget_round_trips(conn)
    return {
        "statuses": counts,
        "events": events,
        "usage": usage,
        "max_attempts": most,
        "waits": timing,
        "budget_calls": trips,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings_names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in settings_names}
    tpm = args.tpm or NO_LIMIT
    with (
        fresh_database() as url,
        FakeOpenAI(
            CatalogResponder(),
            api_key=API_KEY,
            time_to_first_token=args.ttft,
            tokens_per_second=args.tokens_per_second,
            models=[MODEL],
        ) as fake,
        tempfile.TemporaryDirectory(prefix="mealworker-fleet-") as logs,
    ):
        fake.budget = RateBudget(tokens_per_minute=tpm, requests_per_minute=args.rpm or NO_LIMIT)
        asyncio.run(enqueue(url, owners(args.plans, args.users, args.heavy_share), args.days))
        with psycopg.connect(url, autocommit=True) as conn:
            # Count the budget functions' calls in the workers' sessions (a superuser setting).
            conn.execute(
                sql.SQL("alter database {} set track_functions = 'all'").format(
                    sql.Identifier(conn.info.dbname)
                )
            )
        env.update(
            {
                "DATABASE_URL": url,
                "PLANNER": "openai",
                "OPENAI_API_KEY": API_KEY,
                "OPENAI_BASE_URL": fake.base_url,
                "OPENAI_MODEL": MODEL,
                "MAX_CONCURRENT_JOBS": str(args.concurrency),
                "POLL_INTERVAL_MS": "200",
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "text",
                "LOG_DIR": logs,
                "OPENAI_SHARED_BUDGET": "false" if args.no_shared_budget else "true",
            }
        )
        command = [sys.executable, "-m", "mealplan_cli", "work"]
        started = time.monotonic()
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(args.workers)
        ]
        timed_out = False
        try:
            while True:
                time.sleep(0.5)
                statuses = outcome(url)["statuses"]
                finished = sum(statuses.get(s, 0) for s in ("completed", "failed", "cancelled"))
                if finished >= args.plans:
                    break
                if time.monotonic() - started > args.timeout:
                    timed_out = True
                    break
            drain = time.monotonic() - started
        finally:
            for worker in workers:
                worker.terminate()
            errors = []
            for worker in workers:
                _, stderr = worker.communicate(timeout=60)
                if worker.returncode not in (0, -15):
                    errors.append(stderr.decode(errors="replace")[-500:])
        found = outcome(url, args.users)
    completed = found["statuses"].get("completed", 0)
    budget = fake.budget
    charged = budget.charged_tokens
    ideal = charged / tpm * 60 if args.tpm else None
    usage = {name: int(value) for name, value in found["usage"].items()}
    return {
        "benchmark": "fleet_budget",
        "database": server_description(),
        "command": " ".join(["python -m scripts.bench.fleet_budget", *sys.argv[1:]]),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "plans": args.plans,
        "users": args.users or None,
        "heavy_share": args.heavy_share if args.users else None,
        "days": args.days,
        "tpm_limit": args.tpm or None,
        "shared_budget": not args.no_shared_budget,
        "plans_completed": completed,
        "plans_failed": found["statuses"].get("failed", 0),
        "timed_out": timed_out,
        "successful_calls": budget.answered,
        "rate_limited_429": budget.refused,
        "429_per_successful_call": round(budget.refused / max(budget.answered, 1), 4),
        "job_retries": found["events"].get("retry_scheduled", 0),
        "max_attempts_used": found["max_attempts"]["n"],
        "tokens_charged_per_plan": round(charged / max(completed, 1)),
        "tokens_charged_per_plan_worker_count": round(usage["charged"] / max(completed, 1)),
        "prompt_tokens_per_plan": round(usage["input"] / max(completed, 1)),
        "cached_prompt_tokens_per_plan": round(usage["cached"] / max(completed, 1)),
        "completion_tokens_per_plan": round(usage["output"] / max(completed, 1)),
        "calls_per_plan": round(usage["calls"] / max(completed, 1), 2),
        "budget_calls": found["budget_calls"],
        "budget_round_trips_per_successful_call": round(
            round_trips(found["budget_calls"]) / max(budget.answered, 1), 2
        ),
        **found["waits"],
        "drain_seconds": round(drain, 1),
        "ideal_drain_seconds": None if ideal is None else round(ideal, 1),
        "drain_vs_ideal": None if not ideal else round(drain / ideal, 2),
        "worker_errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--plans", type=int, default=40)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument(
        "--users", type=int, default=0, help="the plans' users (0: no user, each plan alone)"
    )
    parser.add_argument(
        "--heavy-share",
        type=float,
        default=0.0,
        help="with --users, the share of the plans that are user 0's (the rest in turn)",
    )
    parser.add_argument("--tpm", type=int, default=2_000_000, help="0: no limit")
    parser.add_argument("--rpm", type=int, default=0, help="0: no limit")
    parser.add_argument("--ttft", type=float, default=0.3)
    parser.add_argument("--tokens-per-second", type=float, default=400.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--no-shared-budget",
        action="store_true",
        help="each worker meets the limit alone (OPENAI_SHARED_BUDGET=false), for comparison",
    )
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
