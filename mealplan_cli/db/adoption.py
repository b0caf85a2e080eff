"""Taking over a database of the original Node worker (``migrate --adopt``).

Such a database has its own ``public.background_jobs`` (no priority, run_at, lease columns...)
and the app's ``public.meal_plans`` (the app's UI reads it; it has the app's own columns). The
first migration creates its tables with ``create table if not exists``, so run as is it would
keep the Node tables and fail half-way (``column "priority" does not exist``).

So before the first migration runs, ``inspect`` compares both tables with what mealworker
needs. Without ``--adopt``, ``migrate`` refuses, having changed nothing, with a message naming
each table and its missing or mistyped columns. With ``--adopt``, in ONE transaction together
with every migration (all or nothing):

* ``public.background_jobs`` is moved, whole, to ``mealworker_legacy.background_jobs`` (``alter
  table ... set schema``: every row, index, trigger and sequence goes with it; history stays
  there, readable by the database owner);
* ``public.meal_plans`` is upgraded in place: the columns mealworker needs and it lacks are
  added (nullable, or with a default), its status check is widened to mealworker's statuses plus
  every status its rows have, and the privileges the app granted on it are put back after the
  first migration's ``revoke``; no row and no app column is touched;
* the migrations run, and the old queue's pending (and, since the Node worker must be stopped
  first, processing) jobs are queued again in the new ``background_jobs``, each payload keeping
  ``legacy_job_id``; their meal plans go back to ``pending``;
* a trigger (``mealworker_accept_node_jobs``) translates jobs the app still inserts the Node
  worker's way, so the app keeps working unchanged until it calls ``request_meal_plan``.

A ``meal_plans`` that cannot be adopted (its ``id`` is not a uuid, a needed column has another
type, an app column is NOT NULL without a default so mealworker could not insert a row) is
refused even with ``--adopt``, naming the columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from mealplan_cli.errors import LegacySchemaError

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

STATUSES = ("pending", "generating", "completed", "failed", "cancelled")

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
        if await _exists(conn, f"{LEGACY_SCHEMA}.background_jobs"):
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


async def _exists(conn: Conn, relation: str) -> bool:
    row = await (await conn.execute("select to_regclass(%s) is not null", (relation,))).fetchone()
    return bool(row and row[0])


Grant = tuple[str, str, str | None]
"""(grantee, privilege, column or None)"""


async def _grants(conn: Conn) -> list[Grant]:
    """Privileges granted on ``public.meal_plans`` and its columns (to restore after the
    first migration's ``revoke all``, which the app's UI would otherwise lose)."""
    rows = await (
        await conn.execute(
            """
            select coalesce(r.rolname, 'public'), a.privilege_type, null::text
              from pg_catalog.pg_class c
             cross join lateral pg_catalog.aclexplode(c.relacl) a
              left join pg_catalog.pg_roles r on r.oid = a.grantee
             where c.oid = 'public.meal_plans'::regclass and a.grantee <> c.relowner
            union all
            select coalesce(r.rolname, 'public'), a.privilege_type, att.attname::text
              from pg_catalog.pg_attribute att
             cross join lateral pg_catalog.aclexplode(att.attacl) a
              left join pg_catalog.pg_roles r on r.oid = a.grantee
             where att.attrelid = 'public.meal_plans'::regclass and att.attacl is not null
            """
        )
    ).fetchall()
    return [(str(r[0]), str(r[1]), None if r[2] is None else str(r[2])) for r in rows]


async def prepare(conn: Conn, legacy: LegacySchema) -> list[Grant]:
    """Move the old queue aside and fit ``meal_plans``; returns the grants to restore."""
    await conn.execute(
        sql.SQL("create schema if not exists {}; revoke all on schema {} from public").format(
            sql.Identifier(LEGACY_SCHEMA), sql.Identifier(LEGACY_SCHEMA)
        )
    )
    jobs = legacy.problem("background_jobs")
    if jobs is not None:
        row = await (await conn.execute("select count(*) from public.background_jobs")).fetchone()
        await conn.execute(
            sql.SQL("alter table public.background_jobs set schema {}").format(
                sql.Identifier(LEGACY_SCHEMA)
            )
        )
        legacy.notes.append(
            f"moved public.background_jobs ({row[0] if row else 0} rows) to "
            f"{LEGACY_SCHEMA}.background_jobs"
        )
    grants = await _grants(conn) if await _exists(conn, "public.meal_plans") else []
    plans = legacy.problem("meal_plans")
    if plans is not None:
        for column in plans.missing:
            type_name, default = PLAN_COLUMNS[column]
            clause = f" not null default {default}" if default else ""
            await conn.execute(
                sql.SQL("alter table public.meal_plans add column {} {}").format(
                    sql.Identifier(column), sql.SQL(type_name + clause)
                )
            )
        if plans.missing:
            legacy.notes.append(f"added to public.meal_plans: {', '.join(plans.missing)}")
        await _widen_status_check(conn, legacy)
        await conn.execute(
            """
            do $$
            begin
              if not exists (select 1 from pg_catalog.pg_constraint
                              where conname = 'meal_plans_user_idempotency_key'
                                and conrelid = 'public.meal_plans'::regclass) then
                alter table public.meal_plans
                  add constraint meal_plans_user_idempotency_key unique (user_id, idempotency_key);
              end if;
            end
            $$
            """
        )
    return grants


async def _widen_status_check(conn: Conn, legacy: LegacySchema) -> None:
    """Replace the app's status check by one allowing mealworker's statuses and every status
    the rows have (the old definition is kept in the new constraint's comment)."""
    rows = await (
        await conn.execute(
            """
            select c.conname, pg_catalog.pg_get_constraintdef(c.oid)
              from pg_catalog.pg_constraint c
              join pg_catalog.pg_attribute a
                on a.attrelid = c.conrelid and a.attnum = any(c.conkey)
             where c.conrelid = 'public.meal_plans'::regclass and c.contype = 'c'
               and a.attname = 'status'
            """
        )
    ).fetchall()
    found = await (
        await conn.execute("select distinct status from public.meal_plans where status is not null")
    ).fetchall()
    allowed = list(dict.fromkeys([*STATUSES, *(str(r[0]) for r in found)]))
    for name, _ in rows:
        await conn.execute(
            sql.SQL("alter table public.meal_plans drop constraint {}").format(
                sql.Identifier(str(name))
            )
        )
    await conn.execute(
        sql.SQL(
            "alter table public.meal_plans add constraint meal_plans_status_check check ({})"
        ).format(sql.SQL("status in ({})").format(sql.SQL(", ").join(map(sql.Literal, allowed))))
    )
    if rows:
        old = "; ".join(f"{r[0]}: {r[1]}" for r in rows)
        await conn.execute(
            sql.SQL(
                "comment on constraint meal_plans_status_check on public.meal_plans is {}"
            ).format(sql.Literal(f"widened by mealworker migrate --adopt; was {old}"))
        )
        legacy.notes.append(f"widened the status check of public.meal_plans to {allowed}")


_IMPORT = f"""
with legacy as (
  select to_jsonb(l) as r
    from {LEGACY_SCHEMA}.background_jobs l
   where coalesce(to_jsonb(l) ->> 'status', 'pending') in ('pending', 'processing')
), prepared as (
  select l.r ->> 'id' as legacy_id,
         coalesce(l.r ->> 'job_type', l.r ->> 'type', 'generate_meal_plan') as job_type,
         coalesce(l.r -> 'payload', l.r -> 'data', '{{}}'::jsonb) as payload,
         coalesce((l.r ->> 'attempts')::int, 0) as attempts,
         coalesce((l.r ->> 'max_attempts')::int, 5) as max_attempts,
         coalesce((l.r ->> 'created_at')::timestamptz, now()) as created_at
    from legacy l
), planned as (
  select p.*, mp.id as meal_plan_id,
         coalesce(p.payload -> 'request', p.payload -> 'preferences', mp.request) as request
    from prepared p
    left join public.meal_plans mp
      on mp.id::text = coalesce(p.payload ->> 'meal_plan_id', p.payload ->> 'mealPlanId',
                                p.payload ->> 'mealplan_id')
), imported as (
  insert into public.background_jobs (job_type, payload, attempts, max_attempts, meal_plan_id,
                                      created_at)
  select p.job_type,
         case when p.job_type = 'generate_meal_plan'
              then jsonb_build_object('meal_plan_id', p.meal_plan_id, 'request', p.request,
                                      'legacy_job_id', p.legacy_id)
              else p.payload || jsonb_build_object('legacy_job_id', p.legacy_id) end,
         p.attempts, greatest(p.max_attempts, p.attempts + 1), p.meal_plan_id, p.created_at
    from planned p
   order by p.created_at, p.legacy_id
  returning meal_plan_id, payload
), plans as (
  update public.meal_plans mp
     set status = 'pending',
         request = case when mp.request = '{{}}'::jsonb and jsonb_typeof(i.payload -> 'request')
                                                            = 'object'
                        then i.payload -> 'request' else mp.request end,
         updated_at = now()
    from imported i
   where mp.id = i.meal_plan_id
  returning mp.id
)
select (select count(*) from imported), (select count(*) from plans)
"""


_ACCEPT_NODE_JOBS = f"""
create or replace function {LEGACY_SCHEMA}.accept_node_job()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_plan uuid;
  v_request jsonb;
begin
  begin
    v_plan := coalesce(new.payload ->> 'meal_plan_id', new.payload ->> 'mealPlanId')::uuid;
  exception when invalid_text_representation then
    return new;  -- not a meal plan id: the job fails with that reason, visibly
  end;
  if v_plan is null or not exists (select 1 from public.meal_plans mp where mp.id = v_plan) then
    return new;
  end if;
  v_request := coalesce(new.payload -> 'request', new.payload -> 'preferences');
  if v_request is null then
    select mp.request into v_request from public.meal_plans mp where mp.id = v_plan;
  end if;
  update public.meal_plans mp
     set request = v_request
   where mp.id = v_plan and mp.request = '{{}}'::jsonb
     and jsonb_typeof(v_request) = 'object';
  new.meal_plan_id := v_plan;
  new.payload := jsonb_build_object('meal_plan_id', v_plan, 'request', v_request,
                                    'node_payload', new.payload);
  return new;
end
$$;
revoke all on function {LEGACY_SCHEMA}.accept_node_job() from public;
create or replace trigger mealworker_accept_node_jobs
  before insert on public.background_jobs
  for each row
  when (new.job_type = 'generate_meal_plan' and new.meal_plan_id is null)
  execute function {LEGACY_SCHEMA}.accept_node_job();
"""
"""While the app still enqueues the Node worker's way (an insert into background_jobs with
``{{"mealPlanId", "preferences"}}``), such a job is given the meal plan and request mealworker
reads. Drop the trigger once the app calls ``request_meal_plan`` instead."""


async def finish(conn: Conn, legacy: LegacySchema, grants: list[Grant]) -> None:
    """After the migrations: the app's privileges back, the old pending jobs queued again."""
    for grantee, privilege, column in grants:
        target = sql.Identifier(grantee) if grantee != "public" else sql.SQL("public")
        columns = sql.SQL("") if column is None else sql.SQL("({})").format(sql.Identifier(column))
        await conn.execute(
            sql.SQL("grant {} {} on table public.meal_plans to {}").format(
                sql.SQL(privilege), columns, target
            )
        )
    if legacy.problem("background_jobs") is None:
        return
    await conn.execute(_ACCEPT_NODE_JOBS)
    await conn.execute(
        "select pg_catalog.set_config('mealworker.detail', %s, true)",
        (f'{{"imported_from": "{LEGACY_SCHEMA}.background_jobs"}}',),
    )
    row = await (await conn.execute(_IMPORT)).fetchone()
    await conn.execute("select pg_catalog.set_config('mealworker.detail', '', true)")
    jobs, plans = (int(row[0]), int(row[1])) if row else (0, 0)  # type: ignore[call-overload]
    legacy.notes.append(
        f"queued again {jobs} pending job{'s' if jobs != 1 else ''} of the old queue "
        f"({plans} meal plan{'s' if plans != 1 else ''} back to pending)"
    )
