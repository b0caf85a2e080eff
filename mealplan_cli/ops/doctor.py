"""``mealworker doctor``'s checks: each says ok, warn or fail, and what to do about it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

from mealplan_cli.core.db.base import Database, DatabaseError
from mealplan_cli.core.db.connect import (
    data_dir_of,
    direct_connection,
    open_database,
    postgres_url,
    transport_of,
)
from mealplan_cli.core.db.migrations import migration_status
from mealplan_cli.core.queue import PING_JOB, Queue
from mealplan_cli.mealplans.generation.services import choose_planner
from mealplan_cli.ops.errors import MealworkerError
from mealplan_cli.ops.redact import redact_dsn
from mealplan_cli.settings.config import Settings

TABLES = ("meal_plans", "background_jobs", "background_job_events", "workers", "image_cache")


class Verdict(StrEnum):
    ok = "ok"
    warn = "warn"
    fail = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    advice: str = ""


def _mask(value: str) -> str:
    return f"{value[:4]}...{value[-2:]}" if len(value) > 10 else "***"


def settings_check(settings: Settings) -> Check:
    shown = []
    for name in (
        "openai_api_key",
        "unsplash_access_key",
        "supabase_service_role_key",
        "database_url",
    ):
        secret = getattr(settings, name)
        if secret is not None:
            value = secret.get_secret_value()
            masked = redact_dsn(value) if name == "database_url" else _mask(value)
            shown.append(f"{name.upper()}={masked}")
    return Check("settings", Verdict.ok, ", ".join(shown) or "no secrets set (offline defaults)")


def transport_check(settings: Settings) -> Check:
    transport = transport_of(settings)
    reasons = {
        "postgres": "DATABASE_URL is set",
        "rest": "SUPABASE_URL is set and DATABASE_URL is not",
        "embedded": "neither DATABASE_URL nor SUPABASE_URL is set",
    }
    if transport == "embedded":
        return Check(
            "transport",
            Verdict.warn,
            f"embedded: {reasons[transport]}, so the worker uses this machine's own database "
            f"in {data_dir_of(settings)}; jobs your app queues in Supabase never reach it",
            "set DATABASE_URL, or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (see env.example)",
        )
    return Check("transport", Verdict.ok, f"{transport}: {reasons[transport]}")


def listen_check(settings: Settings) -> Check:
    transport = transport_of(settings)
    if transport == "rest":
        return Check(
            "wake-ups",
            Verdict.warn,
            "REST cannot LISTEN: the worker polls every POLL_INTERVAL_MS",
            "set DATABASE_URL (direct or session pooler) for millisecond pickup",
        )
    if transport == "postgres" and settings.database_url is not None:
        port = urlsplit(settings.database_url.get_secret_value()).port
        if port == 6543:
            return Check(
                "wake-ups",
                Verdict.warn,
                "port 6543 is Supabase's transaction pooler: LISTEN does not work through it",
                "use the session pooler or direct connection (port 5432) for LISTEN wake-ups",
            )
    return Check("wake-ups", Verdict.ok, "LISTEN/NOTIFY available, polling as a fallback")


async def listen_roundtrip(settings: Settings, conn: psycopg.AsyncConnection[Any]) -> Check:
    """LISTEN, NOTIFY and hear it back on one connection: what the worker's wake-ups need."""
    static = listen_check(settings)
    if static.verdict is not Verdict.ok:
        return static
    channel = "mealworker_doctor"
    await conn.execute(f"listen {channel}")
    try:
        await conn.execute("select pg_notify(%s, 'ping')", (channel,))
        heard = [n async for n in conn.notifies(timeout=5, stop_after=1)]
    finally:
        await conn.execute(f"unlisten {channel}")
    if not heard:
        return Check(
            "wake-ups",
            Verdict.warn,
            "LISTEN did not hear a NOTIFY within 5s: the worker falls back to polling",
            "connect directly or through the session pooler (port 5432) for LISTEN",
        )
    return Check("wake-ups", Verdict.ok, "LISTEN/NOTIFY answered, polling as a fallback")


NOT_CONNECTED = Check(
    "wake-ups",
    Verdict.warn,
    "not checked: the database could not be reached",
    "fix the database check first",
)


KEPT_JOBS_WARNING = 100_000
"""Finished jobs kept in ``background_jobs`` from which ``doctor`` suggests pruning."""


def history_check(stats: dict[str, Any]) -> Check:
    """Finished jobs stay until ``mealworker prune`` deletes them: say when they pile up."""
    by_status = stats.get("by_status") or {}
    failed = int(by_status.get("failed") or 0)
    kept = failed + sum(int(by_status.get(status) or 0) for status in ("completed", "cancelled"))
    detail = f"{kept:,} finished jobs kept" + (f", {failed:,} of them failed" if failed else "")
    if kept > KEPT_JOBS_WARNING:
        advice = (
            "run `mealworker prune` (nightly from scripts/mealworker.cron) to delete the old ones"
        )
        if failed:  # prune keeps failed jobs unless told: an operator may still requeue them
            advice += "; `--include-failed` deletes old failed ones too"
        return Check("history", Verdict.warn, detail, advice)
    return Check("history", Verdict.ok, detail)


async def database_checks(settings: Settings, db: Database) -> list[Check]:
    started = time.monotonic()
    try:
        stats = await Queue(db).stats()
    except DatabaseError as error:
        return [Check("database", Verdict.fail, str(error), "check the database settings")]
    elapsed = (time.monotonic() - started) * 1000
    pending = (stats.get("by_status") or {}).get("pending", 0)
    checks = [
        Check(
            "database",
            Verdict.ok,
            f"answered in {elapsed:.0f} ms; {pending} job{'' if pending == 1 else 's'} pending",
        ),
        history_check(stats),
    ]
    if transport_of(settings) == "rest":
        checks.append(
            Check(
                "migrations",
                Verdict.warn,
                "cannot be listed over REST (the queue functions answer, so they are applied)",
                "run `mealworker migrate --status` with DATABASE_URL to see every file",
            )
        )
        checks.append(listen_check(settings))
        return checks
    async with direct_connection(await postgres_url(settings)) as conn:
        statuses = await migration_status(conn)
        edited = [s.migration.file_name for s in statuses if s.edited]
        pending_files = [s.migration.file_name for s in statuses if not s.applied]
        if edited:
            checks.append(
                Check(
                    "migrations",
                    Verdict.fail,
                    f"edited after they ran: {', '.join(edited)}",
                    "restore the files; put changes in new migrations",
                )
            )
        elif pending_files:
            checks.append(
                Check(
                    "migrations",
                    Verdict.fail,
                    f"pending: {', '.join(pending_files)}",
                    "run `mealworker migrate`",
                )
            )
        else:
            checks.append(Check("migrations", Verdict.ok, f"all {len(statuses)} applied"))
        rows = await (
            await conn.execute(
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = 'public' and c.relname = any(%s) and c.relrowsecurity",
                (list(TABLES),),
            )
        ).fetchall()
        protected = {str(row[0]) for row in rows}
        missing = [t for t in TABLES if t not in protected]
        checks.append(
            Check(
                "row level security",
                Verdict.fail,
                f"off on {', '.join(missing)}",
                "run `mealworker migrate`; never disable RLS on these tables",
            )
            if missing
            else Check("row level security", Verdict.ok, "on for every table")
        )
        checks.append(await listen_roundtrip(settings, conn))
    return checks


async def budget_check(settings: Settings, db: Database) -> Check:
    """The fleet's OpenAI budget for this key and model: the limit (learned or configured),
    the daily caps and what is spent of them today, and whether a cap holds jobs back now."""
    from mealplan_cli.mealplans.budget import budget_key, budget_stats
    from mealplan_cli.mealplans.generation.services import check_spend_caps, model_price

    name = "openai budget"
    try:
        planner = choose_planner(settings)
        check_spend_caps(settings)
    except MealworkerError as error:
        return Check(name, Verdict.fail, str(error))
    if planner.value != "openai" or settings.openai_api_key is None:
        return Check(name, Verdict.ok, "not used: the offline catalogue planner is selected")
    if not settings.openai_shared_budget:
        return Check(
            name,
            Verdict.warn,
            "not shared (OPENAI_SHARED_BUDGET=false): each worker meets OpenAI's rate limits "
            "alone, and no daily cap can be kept",
            "remove OPENAI_SHARED_BUDGET=false",
        )
    key = budget_key(settings.openai_api_key.get_secret_value(), settings.openai_base_url)
    try:
        rows = [
            row
            for row in await budget_stats(db)
            if row["budget_key"] == key and row["model"] == settings.openai_model
        ]
    except DatabaseError as error:
        return Check(name, Verdict.fail, str(error), "run `mealworker migrate`")
    row: dict[str, Any] = rows[0] if rows else {}
    share = settings.openai_budget_share
    learned, configured = row.get("tokens_limit"), settings.openai_tpm_limit
    if learned:
        limit = f"{int(learned):,} tokens/min learned from OpenAI's answers"
        if configured and configured < int(learned):
            limit += f", held to OPENAI_TPM_LIMIT={configured:,}"
    elif configured:
        limit = f"{configured:,} tokens/min from OPENAI_TPM_LIMIT (not learned yet)"
    else:
        limit = "limit not learned yet (the first call's answer teaches it)"
    parts = [f"{key}, {settings.openai_model}: {limit}"]
    if share < 1:
        parts.append(f"this fleet uses {share:.0%} of it")
    charged = int(row.get("tokens_charged") or 0)
    cap = settings.openai_daily_token_cap
    parts.append(
        f"{charged:,} tokens charged today" + (f" of a {cap:,} cap" if cap is not None else "")
    )
    spent = row.get("key_usd_spent")
    usd_cap = settings.openai_daily_usd_cap
    price = model_price(settings)
    if spent is not None or usd_cap is not None:
        parts.append(
            f"${float(spent or 0):.4f} spent today"
            + (f" of a ${usd_cap:.2f} cap" if usd_cap is not None else "")
        )
    elif price is None:
        parts.append("cost not counted (the model's price is unknown)")
    if cap is None and usd_cap is None:
        parts.append("no daily cap")
    capped = row.get("capped_until")
    if capped:
        by = "OPENAI_DAILY_USD_CAP" if row.get("capped_by") == "usd" else "OPENAI_DAILY_TOKEN_CAP"
        fallback = settings.openai_daily_cap_fallback
        return Check(
            name,
            Verdict.warn,
            "; ".join(parts)
            + f"; the daily cap ({by}) is reached: OpenAI jobs "
            + ("are written by the catalogue" if fallback else "wait")
            + f" until {str(capped)[:16]} UTC",
            f"raise {by}, then `mealworker requeue --waiting` to run the waiting jobs now",
        )
    return Check(name, Verdict.ok, "; ".join(parts))


async def openai_check(settings: Settings, http: httpx.AsyncClient) -> Check:
    try:
        planner = choose_planner(settings)
    except MealworkerError as error:
        return Check("openai", Verdict.fail, str(error))
    if planner.value != "openai" or settings.openai_api_key is None:
        return Check("openai", Verdict.ok, "not used: the offline catalogue planner is selected")
    base = settings.openai_base_url or "https://api.openai.com/v1"
    headers = {"Authorization": f"Bearer {settings.openai_api_key.get_secret_value()}"}
    try:
        response = await http.get(f"{base}/models/{settings.openai_model}", headers=headers)
    except httpx.HTTPError as error:
        return Check(
            "openai",
            Verdict.fail,
            f"{base} unreachable ({type(error).__name__})",
            "check OPENAI_BASE_URL and the network",
        )
    if response.status_code == 401:
        return Check(
            "openai", Verdict.fail, "the API key was refused (401)", "check OPENAI_API_KEY"
        )
    if response.status_code == 404:
        return Check(
            "openai",
            Verdict.fail,
            f"model {settings.openai_model!r} not available",
            "set OPENAI_MODEL to a model the key can use",
        )
    if response.status_code >= 400:
        return Check("openai", Verdict.warn, f"{base} answered HTTP {response.status_code}")
    return Check("openai", Verdict.ok, f"key valid, {settings.openai_model} available")


async def unsplash_check(settings: Settings, http: httpx.AsyncClient) -> Check:
    if settings.unsplash_access_key is None:
        return Check(
            "unsplash",
            Verdict.warn,
            "no UNSPLASH_ACCESS_KEY: plans have no photos",
            "set UNSPLASH_ACCESS_KEY to add dish photos",
        )
    headers = {"Authorization": f"Client-ID {settings.unsplash_access_key.get_secret_value()}"}
    try:
        response = await http.get(
            f"{settings.unsplash_api_url}/search/photos",
            params={"query": "salad", "per_page": "1"},
            headers=headers,
        )
    except httpx.HTTPError as error:
        return Check(
            "unsplash",
            Verdict.fail,
            f"unreachable ({type(error).__name__})",
            "check UNSPLASH_API_URL and the network",
        )
    remaining = response.headers.get("x-ratelimit-remaining")
    limit = response.headers.get("x-ratelimit-limit")
    if response.status_code == 401:
        return Check(
            "unsplash",
            Verdict.fail,
            "the access key was refused (401)",
            "check UNSPLASH_ACCESS_KEY",
        )
    if response.status_code in (403, 429):
        return Check(
            "unsplash", Verdict.warn, "hourly rate limit reached", "photos resume after it resets"
        )
    if response.status_code >= 400:
        return Check("unsplash", Verdict.warn, f"answered HTTP {response.status_code}")
    quota = f"; {remaining} of {limit} requests left this hour" if remaining else ""
    low = (
        remaining is not None
        and remaining.isdigit()
        and int(remaining) <= settings.unsplash_min_remaining
    )
    return Check("unsplash", Verdict.warn if low else Verdict.ok, f"key valid{quota}")


async def roundtrip_check(db: Database, wait_seconds: float) -> Check:
    queue = Queue(db)
    (job_id,) = await queue.enqueue_jobs(PING_JOB, [{}], max_attempts=1)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        info = await queue.get_job(job_id)
        if info is not None and info.status == "completed":
            return Check("roundtrip", Verdict.ok, f"ping job {job_id} done by {info.locked_by}")
        await asyncio.sleep(0.2)
    await queue.cancel([job_id])
    return Check(
        "roundtrip",
        Verdict.fail,
        f"ping job {job_id} not done within {wait_seconds:g}s",
        "is a worker running (`mealworker stats` lists them)?",
    )


async def run_checks(
    settings: Settings,
    *,
    roundtrip: float | None,
    report: Callable[[Check], Awaitable[None] | None],
) -> list[Check]:
    """Every check, in order; ``report`` sees each as soon as it is known."""
    results: list[Check] = []
    mask = settings.redactor().mask

    async def add(check: Check) -> None:
        check = replace(check, detail=mask(check.detail), advice=mask(check.advice))
        results.append(check)
        outcome = report(check)
        if outcome is not None:
            await outcome

    for check in (settings_check(settings), transport_check(settings)):
        await add(check)
    try:
        async with open_database(settings) as db:
            for check in await database_checks(settings, db):
                await add(check)
            await add(await budget_check(settings, db))
            if roundtrip is not None:
                await add(await roundtrip_check(db, roundtrip))
    except MealworkerError as error:
        await add(Check("database", Verdict.fail, str(error), "check the database settings"))
    if not any(check.name == "wake-ups" for check in results):
        await add(NOT_CONNECTED)
    async with httpx.AsyncClient(timeout=10) as http:
        await add(await openai_check(settings, http))
        await add(await unsplash_check(settings, http))
    return results
