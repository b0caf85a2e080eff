"""Calls of the queue's SQL functions as the worker makes them, for the contract tests."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[dict[str, Any]]


Row = dict[str, Any]


def call(conn: Conn, function: str, **params: Any) -> list[Row]:
    args = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder()) for name in params
    )
    query = sql.SQL("select * from public.{}({})").format(sql.Identifier(function), args)
    return conn.execute(query, list(params.values())).fetchall()


def claim(
    conn: Conn,
    worker: str = "w1",
    types: tuple[str, ...] = ("ping", "generate_meal_plan"),
    limit: int = 10,
    lease: float = 300,
) -> list[Row]:
    return call(
        conn,
        "mealworker_claim_jobs",
        p_worker_id=worker,
        p_job_types=list(types),
        p_limit=limit,
        p_lease_seconds=lease,
    )


def complete(
    conn: Conn, ids: list[int], tokens: list[uuid.UUID], results: list[dict[str, Any]]
) -> list[int]:
    rows = call(
        conn,
        "mealworker_complete_jobs",
        p_job_ids=ids,
        p_lease_tokens=tokens,
        p_results=[Jsonb(r) for r in results],
    )
    return [r["mealworker_complete_jobs"] for r in rows]


def insert_pending(conn: Conn, job_type: str, count: int, *, seconds_ago: int = 0) -> None:
    """``count`` pending jobs of ``job_type``, oldest first, written without their events."""
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        conn.execute(
            "insert into public.background_jobs (job_type, payload, run_at)"
            " select %s, '{}', now() - make_interval(secs => %s + g)"
            "   from generate_series(1, %s) as g",
            (job_type, seconds_ago, count),
        )
