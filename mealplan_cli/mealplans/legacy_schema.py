"""Whether a database holds the original Node worker's tables, and what is wrong with them.

A Node worker's database has its own ``public.background_jobs`` (no priority, run_at, lease
columns...) and the app's ``public.meal_plans`` (with the app's own columns). ``inspect``
compares both with what mealworker needs, before the first migration runs: ``migrate`` refuses
such a database with ``LegacySchema.refusal``, and ``migrate --adopt`` takes it over
(``mealplan_cli.mealplans.adoption``) unless ``LegacySchema.check_adoptable`` says it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from mealplan_cli.ops.errors import LegacySchemaError

LEGACY_SCHEMA = "mealworker_legacy"

Conn = psycopg.AsyncConnection[tuple[object, ...]]

JOB_COLUMNS = {
    "id": "bigint",
    "job_type": "text",
    "payload": "jsonb",
    "status": "text",
    "priority": "integer",
    "run_at": "timestamp with time zone",
    "attempts": "integer",
    "max_attempts": "integer",
    "locked_by": "text",
    "lease_token": "uuid",
    "lease_expires_at": "timestamp with time zone",
    "last_error": "text",
    "cancel_requested": "boolean",
    "meal_plan_id": "uuid",
    "created_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone",
    "started_at": "timestamp with time zone",
    "finished_at": "timestamp with time zone",
}
"""What the first migration's ``background_jobs`` has (and the queue functions use)."""

PLAN_COLUMNS = {
    "id": ("uuid", None),
    "user_id": ("uuid", None),
    "status": ("text", "'pending'"),
    "request": ("jsonb", "'{}'::jsonb"),
    "plan": ("jsonb", None),
    "progress": ("jsonb", "'{}'::jsonb"),
    "error": ("text", None),
    "usage": ("jsonb", None),
    "idempotency_key": ("text", None),
    "created_at": ("timestamp with time zone", "now()"),
    "updated_at": ("timestamp with time zone", "now()"),
    "completed_at": ("timestamp with time zone", None),
}
"""``meal_plans`` columns mealworker reads and writes, with the default an added one gets."""

_SAME_TYPE = {
    "character varying": "text",
    "timestamp without time zone": "timestamp with time zone",
}


@dataclass
class TableProblem:
    table: str
    missing: list[str] = field(default_factory=list)
    mistyped: list[str] = field(default_factory=list)
    """``column (type, needs type)``"""
    blocking: list[str] = field(default_factory=list)
    """Why ``--adopt`` cannot take this table over either."""

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"has no {', '.join(self.missing)}")
        if self.mistyped:
            parts.append(f"has {', '.join(self.mistyped)}")
        return f"public.{self.table} " + " and ".join(parts)


@dataclass
class LegacySchema:
    problems: list[TableProblem]
    notes: list[str] = field(default_factory=list)

    def problem(self, table: str) -> TableProblem | None:
        return next((p for p in self.problems if p.table == table), None)

    def refusal(self) -> str:
        found = "; ".join(p.describe() for p in self.problems)
        return (
            f"this database has tables mealworker cannot use as they are (the Node worker's?): "
            f"{found}. Nothing was changed. Run `mealworker migrate --adopt` to move "
            f"public.background_jobs with every row to {LEGACY_SCHEMA}.background_jobs, add "
            "the missing columns to public.meal_plans (every row and app column kept) and "
            "queue the old pending jobs again; see 'Coming from the Node worker' in the README"
        )

    def check_adoptable(self) -> None:
        blocking = [b for p in self.problems for b in p.blocking]
        if blocking:
            raise LegacySchemaError(
                "migrate --adopt cannot take this database over: "
                + "; ".join(blocking)
                + ". Nothing was changed"
            )


async def _columns(conn: Conn, table: str) -> dict[str, tuple[str, bool, bool]]:
    """column -> (type, not null, has default) of ``public.<table>``; empty if no table."""
    rows = await (
        await conn.execute(
            "select a.attname, pg_catalog.format_type(a.atttypid, null), a.attnotnull, "
            "       a.atthasdef or a.attidentity <> '' or a.attgenerated <> '' "
            "  from pg_catalog.pg_attribute a "
            " where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped",
            (f"public.{table}",),
        )
    ).fetchall()
    return {str(r[0]): (str(r[1]), bool(r[2]), bool(r[3])) for r in rows}


def _type(name: str) -> str:
    return _SAME_TYPE.get(name, name)


async def inspect(conn: Conn) -> LegacySchema | None:
    """The incompatible tables, if any (None: nothing in the way of the first migration)."""
    problems = []
    jobs = await _columns(conn, "background_jobs")
    if jobs:
        problem = TableProblem("background_jobs")
        problem.missing = [c for c in JOB_COLUMNS if c not in jobs]
        problem.mistyped = [
            f"{c} {jobs[c][0]} (needs {t})"
            for c, t in JOB_COLUMNS.items()
            if c in jobs and _type(jobs[c][0]) != t
        ]
        if await relation_exists(conn, f"{LEGACY_SCHEMA}.background_jobs"):
            problem.blocking.append(
                f"{LEGACY_SCHEMA}.background_jobs exists already (adopted before?): rename it "
                "to keep it, then adopt again"
            )
        if problem.missing or problem.mistyped:
            problems.append(problem)
    plans = await _columns(conn, "meal_plans")
    if plans:
        problem = TableProblem("meal_plans")
        problem.missing = [c for c in PLAN_COLUMNS if c not in plans]
        problem.mistyped = [
            f"{c} {plans[c][0]} (needs {t})"
            for c, (t, _) in PLAN_COLUMNS.items()
            if c in plans and _type(plans[c][0]) != t
        ]
        if problem.mistyped:
            problem.blocking.append(
                "public.meal_plans is the app's table and keeps its column types: "
                + ", ".join(problem.mistyped)
            )
        required = [
            name
            for name, (_, not_null, has_default) in plans.items()
            if name not in PLAN_COLUMNS and not_null and not has_default
        ]
        if required:
            problem.blocking.append(
                f"public.meal_plans.{', '.join(required)} is NOT NULL without a default, so "
                "mealworker could not create a meal plan: give it a default first"
            )
            problem.mistyped += [f"{c} NOT NULL without a default" for c in required]
        if problem.missing or problem.mistyped:
            problems.append(problem)
    return LegacySchema(problems) if problems else None


async def relation_exists(conn: Conn, relation: str) -> bool:
    """Whether ``relation`` (schema-qualified) exists."""
    row = await (await conn.execute("select to_regclass(%s) is not null", (relation,))).fetchone()
    return bool(row and row[0])
