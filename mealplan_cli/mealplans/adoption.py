"""Taking over a database of the original Node worker (``migrate --adopt``).

Such a database has its own ``public.background_jobs`` (no priority, run_at, lease columns...)
and the app's ``public.meal_plans`` (the app's UI reads it; it has the app's own columns). The
first migration creates its tables with ``create table if not exists``, so run as is it would
keep the Node tables and fail half-way (``column "priority" does not exist``).

So before the first migration runs, ``find_node_worker_schema`` (with ``legacy_schema.inspect``)
compares both tables with what mealworker needs. Without ``--adopt``, ``migrate`` refuses,
having changed nothing, with a message naming each table and its missing or mistyped columns.
With ``--adopt``, in ONE transaction together with every migration (all or nothing):

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

from psycopg import sql

from mealplan_cli.mealplans.legacy_schema import (
    LEGACY_SCHEMA,
    PLAN_COLUMNS,
    Conn,
    LegacySchema,
    inspect,
    relation_exists,
)

STATUSES = ("pending", "generating", "completed", "failed", "cancelled")


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
    grants = await _grants(conn) if await relation_exists(conn, "public.meal_plans") else []
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


@dataclass
class NodeWorkerSchema:
    """The Node worker's tables as ``apply_migrations`` sees another program's schema: refused,
    or taken over around the migrations with ``migrate --adopt``."""

    legacy: LegacySchema
    grants: list[Grant] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return self.legacy.notes

    def refusal(self) -> str:
        return self.legacy.refusal()

    def check_adoptable(self) -> None:
        self.legacy.check_adoptable()

    async def prepare(self, conn: Conn) -> None:
        self.grants = await prepare(conn, self.legacy)

    async def finish(self, conn: Conn) -> None:
        await finish(conn, self.legacy, self.grants)


async def find_node_worker_schema(conn: Conn) -> NodeWorkerSchema | None:
    """The Node worker's tables in the way of the first migration, if any."""
    legacy = await inspect(conn)
    return None if legacy is None else NodeWorkerSchema(legacy)
