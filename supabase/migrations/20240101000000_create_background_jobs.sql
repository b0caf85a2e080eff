-- mealworker: the background-job queue behind meal-plan generation.
--
-- This file is the contract between the database and every client (the Python worker over
-- psycopg or PostgREST, Edge Functions, dashboards). All queue logic lives in the
-- public.mealworker_* functions below; clients call them by name with named arguments.
--
-- Applies on plain PostgreSQL >= 14 and on Supabase, and can be applied again safely.
-- Do not wrap it in BEGIN/COMMIT: the Supabase CLI runs each migration in its own transaction.

-- ---------------------------------------------------------------------------------------------
-- 1. Compatibility: the minimum of Supabase's `auth` schema and roles, where missing
--    (plain PostgreSQL, CI, the embedded server). On Supabase nothing existing is replaced.
-- ---------------------------------------------------------------------------------------------

create schema if not exists auth;

do $$
declare
  r record;
begin
  for r in
    select v.name, v.options
      from (values ('anon', 'nologin noinherit'),
                   ('authenticated', 'nologin noinherit'),
                   ('service_role', 'nologin noinherit bypassrls')) as v (name, options)
  loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = r.name) then
      begin
        execute pg_catalog.format('create role %I %s', r.name, r.options);
      exception when duplicate_object or unique_violation then
        null;  -- roles are cluster-wide: another database's migration created it meanwhile
      end;
    end if;
  end loop;
end
$$;

do $$
begin
  if not exists (
    select 1
      from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'auth' and p.proname = 'uid'
  ) then
    create function auth.uid() returns uuid
      language sql stable
      set search_path = ''
    as $f$
      select coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb
          ->> 'sub')
      )::uuid
    $f$;
  end if;

  if not exists (
    select 1
      from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'auth' and p.proname = 'role'
  ) then
    create function auth.role() returns text
      language sql stable
      set search_path = ''
    as $f$
      select coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
        (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb
          ->> 'role')
      )::text
    $f$;
  end if;
end
$$;

grant usage on schema public to anon, authenticated, service_role;

do $$
begin
  grant usage on schema auth to anon, authenticated, service_role;
exception when insufficient_privilege then
  null;  -- Supabase: the auth schema belongs to supabase_auth_admin and is granted already
end
$$;

-- ---------------------------------------------------------------------------------------------
-- 2. Tables
-- ---------------------------------------------------------------------------------------------

create table if not exists public.meal_plans (
  id uuid primary key default gen_random_uuid(),
  user_id uuid,
  status text not null default 'pending'
    check (status in ('pending', 'generating', 'completed', 'failed', 'cancelled')),
  request jsonb not null,
  plan jsonb,
  progress jsonb not null default '{}',
  error text,
  usage jsonb,
  idempotency_key text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz,
  -- NULLs are distinct: a request without a user or without a key is never deduplicated.
  -- This index leads with user_id, so it is also the index on user_id (RLS policy, lookups).
  constraint meal_plans_user_idempotency_key unique (user_id, idempotency_key)
);

create table if not exists public.background_jobs (
  id bigint generated always as identity primary key,
  job_type text not null,
  payload jsonb not null default '{}',
  status text not null default 'pending'
    check (status in ('pending', 'processing', 'completed', 'failed', 'cancelled')),
  priority int not null default 0,
  run_at timestamptz not null default now(),
  attempts int not null default 0,
  max_attempts int not null default 5 check (max_attempts > 0),
  locked_by text,
  lease_token uuid,
  lease_expires_at timestamptz,
  last_error text,
  cancel_requested boolean not null default false,
  meal_plan_id uuid references public.meal_plans (id) on delete cascade,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  -- A lease token exists only while the job is processing: every transition out of
  -- 'processing' clears it. So a matching token alone proves the lease is held, and the batch
  -- functions fence on the token without a status test (see section 5).
  constraint background_jobs_lease_only_while_processing
    check (lease_token is null or status = 'processing')
);

-- The claim path: pending jobs in claim order.
create index if not exists background_jobs_claim_idx
  on public.background_jobs (priority desc, run_at, id) where status = 'pending';
-- The stale-lease sweep.
create index if not exists background_jobs_lease_idx
  on public.background_jobs (lease_expires_at) where status = 'processing';
create index if not exists background_jobs_meal_plan_id_idx
  on public.background_jobs (meal_plan_id);

-- Append-only history. No foreign key: the history outlives pruned jobs.
create table if not exists public.background_job_events (
  id bigint generated always as identity primary key,
  job_id bigint not null,
  event text not null,
  job_type text,
  worker_id text,
  attempt int,
  detail jsonb,
  created_at timestamptz not null default now()
);

create index if not exists background_job_events_job_id_idx
  on public.background_job_events (job_id);
create index if not exists background_job_events_created_at_idx
  on public.background_job_events (created_at);

create table if not exists public.workers (
  id text primary key,
  host text,
  pid int,
  version text,
  job_types text[],
  status text not null default 'running' check (status in ('running', 'draining', 'stopped')),
  started_at timestamptz,
  last_seen_at timestamptz,
  active_jobs int not null default 0,
  max_jobs int,
  rss_bytes bigint
);

create table if not exists public.image_cache (
  query text primary key,
  photo jsonb,  -- null: Unsplash had no photo for this query
  hits int not null default 0,
  created_at timestamptz,
  last_used_at timestamptz
);

-- ---------------------------------------------------------------------------------------------
-- 3. Row Level Security and table privileges
--    End users read their own meal plans; nothing else is visible to anon or authenticated.
--    Privileges are revoked explicitly because Supabase's default privileges grant everything
--    on new tables to anon and authenticated (and TRUNCATE is not subject to RLS).
-- ---------------------------------------------------------------------------------------------

alter table public.meal_plans enable row level security;
alter table public.background_jobs enable row level security;
alter table public.background_job_events enable row level security;
alter table public.workers enable row level security;
alter table public.image_cache enable row level security;

drop policy if exists "Users read their own meal plans" on public.meal_plans;
create policy "Users read their own meal plans"
  on public.meal_plans
  for select
  to authenticated
  using (user_id = (select auth.uid()));

revoke all on table public.meal_plans, public.background_jobs, public.background_job_events,
  public.workers, public.image_cache from public, anon, authenticated;
revoke all on sequence public.background_jobs_id_seq, public.background_job_events_id_seq
  from public, anon, authenticated;

grant select on table public.meal_plans to authenticated;
grant all on table public.meal_plans, public.background_jobs, public.background_job_events,
  public.workers, public.image_cache to service_role;
grant all on sequence public.background_jobs_id_seq, public.background_job_events_id_seq
  to service_role;

-- ---------------------------------------------------------------------------------------------
-- 4. Events and wake-ups: statement-level triggers on background_jobs
--
-- One INSERT ... SELECT into background_job_events per statement (transition tables), never
-- one per row. The event name comes from the transaction-local setting `mealworker.event`
-- when a function set it just before its statement (`mealworker.worker` and
-- `mealworker.detail` likewise); the trigger consumes (resets) the settings, so they never
-- leak into a later statement of the same transaction. Without a setting, the name is derived:
--   insert -> enqueued; -> processing claimed; -> pending requeued; -> completed/failed/cancelled
--   by that name; cancel_requested false -> true: cancel_requested.
-- A row that reaches a terminal status (completed, failed, cancelled) is always named after it,
-- so one statement may mix e.g. 'released' and 'cancelled' rows. Rows whose status did not
-- change get an event only when the setting names one (or for cancel_requested).
--
-- Wake-ups: pg_notify('mealworker_jobs', job_type) once per distinct job_type whose rows
-- became runnable (pending with run_at <= now()) in the statement.
-- ---------------------------------------------------------------------------------------------

create or replace function public.mealworker_jobs_after_insert()
returns trigger
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_event text := nullif(pg_catalog.current_setting('mealworker.event', true), '');
  v_worker text := nullif(pg_catalog.current_setting('mealworker.worker', true), '');
  v_detail jsonb := nullif(pg_catalog.current_setting('mealworker.detail', true), '')::jsonb;
  v_job_type text;
begin
  if v_event is not null or v_worker is not null or v_detail is not null then
    perform pg_catalog.set_config('mealworker.event', '', true),
            pg_catalog.set_config('mealworker.worker', '', true),
            pg_catalog.set_config('mealworker.detail', '', true);
  end if;

  insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
  select n.id, coalesce(v_event, 'enqueued'), n.job_type, v_worker, n.attempts, v_detail
    from new_rows n
   order by n.id;

  for v_job_type in
    select distinct n.job_type from new_rows n where n.status = 'pending' and n.run_at <= now()
  loop
    perform pg_catalog.pg_notify('mealworker_jobs', v_job_type);
  end loop;

  return null;
end
$$;

create or replace function public.mealworker_jobs_after_update()
returns trigger
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_event text := nullif(pg_catalog.current_setting('mealworker.event', true), '');
  v_worker text := nullif(pg_catalog.current_setting('mealworker.worker', true), '');
  v_detail jsonb := nullif(pg_catalog.current_setting('mealworker.detail', true), '')::jsonb;
  v_job_type text;
begin
  if v_event is not null or v_worker is not null or v_detail is not null then
    perform pg_catalog.set_config('mealworker.event', '', true),
            pg_catalog.set_config('mealworker.worker', '', true),
            pg_catalog.set_config('mealworker.detail', '', true);
  end if;

  insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
  select n.id,
         ev.event,
         n.job_type,
         coalesce(v_worker, n.locked_by, o.locked_by),
         n.attempts,
         nullif(
           jsonb_strip_nulls(jsonb_build_object(
             'from', case when ev.changed then o.status end,
             'to', case when ev.changed then n.status end,
             'last_error', case when ev.event in ('failed', 'retry_scheduled', 'requeued')
                                then n.last_error end,
             'run_at', case when ev.event = 'retry_scheduled' then n.run_at end
           )) || coalesce(v_detail, '{}'::jsonb),
           '{}'::jsonb)
    from new_rows n
    join old_rows o on o.id = n.id
   cross join lateral (
     select o.status is distinct from n.status as changed,
            case
              when o.status is distinct from n.status then
                case
                  when n.status in ('completed', 'failed', 'cancelled') then n.status
                  else coalesce(v_event,
                                case n.status when 'processing' then 'claimed'
                                              when 'pending' then 'requeued' end)
                end
              when n.cancel_requested and not o.cancel_requested then 'cancel_requested'
              else v_event
            end as event
   ) ev
   where ev.event is not null
   order by n.id;

  for v_job_type in
    select distinct n.job_type
      from new_rows n
      join old_rows o on o.id = n.id
     where n.status = 'pending'
       and n.run_at <= now()
       and (o.status <> 'pending' or o.run_at > now())
  loop
    perform pg_catalog.pg_notify('mealworker_jobs', v_job_type);
  end loop;

  return null;
end
$$;

create or replace trigger background_jobs_events_insert
  after insert on public.background_jobs
  referencing new table as new_rows
  for each statement
  execute function public.mealworker_jobs_after_insert();

create or replace trigger background_jobs_events_update
  after update on public.background_jobs
  referencing old table as old_rows new table as new_rows
  for each statement
  execute function public.mealworker_jobs_after_update();

-- ---------------------------------------------------------------------------------------------
-- 5. Queue functions (the contract: names, parameter names and results are relied upon)
--
-- Leases are fenced: a call acting for a claimed job takes (job id, lease_token) and does
-- nothing unless the job is 'processing' with that token. A refused call writes a 'lease_lost'
-- event (for a job that exists) and returns false / null / no row.
-- The fenced functions match on (id, lease_token) only. The check constraint
-- background_jobs_lease_only_while_processing makes a matching token imply 'processing'; an
-- explicit `status = 'processing'` test would let the planner read from the partial lease
-- index whenever its statistics say few jobs are processing: for a batch, a nested loop
-- comparing every processing job with every input row (100 ms for 500), instead of one
-- primary-key lookup per input row.
-- A job whose cancellation was requested never goes back to 'pending': where it would
-- (release, retry, stale lease), it becomes 'cancelled' with its meal plan.
-- ---------------------------------------------------------------------------------------------

-- 5.1 Enqueue one meal plan and its generation job, atomically and idempotently.
create or replace function public.mealworker_enqueue_meal_plan(
  p_request jsonb,
  p_user_id uuid default null,
  p_priority int default 0,
  p_idempotency_key text default null,
  p_max_attempts int default 5
)
returns table (meal_plan_id uuid, job_id bigint, created boolean)
language plpgsql
volatile
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_plan_id uuid;
  v_job_id bigint;
begin
  insert into public.meal_plans as mp (user_id, request, idempotency_key)
  values (p_user_id, p_request, p_idempotency_key)
  on conflict on constraint meal_plans_user_idempotency_key do nothing
  returning mp.id into v_plan_id;

  if v_plan_id is null then
    -- The key was used already (possibly by a transaction that committed just now: this
    -- statement takes a fresh snapshot under READ COMMITTED and sees it).
    select mp.id into v_plan_id
      from public.meal_plans mp
     where mp.user_id = p_user_id and mp.idempotency_key = p_idempotency_key;
    select j.id into v_job_id
      from public.background_jobs j
     where j.meal_plan_id = v_plan_id
     order by j.id
     limit 1;
    return query select v_plan_id, v_job_id, false;
    return;
  end if;

  insert into public.background_jobs as j (job_type, payload, priority, max_attempts, meal_plan_id)
  values ('generate_meal_plan',
          jsonb_build_object('meal_plan_id', v_plan_id, 'request', p_request),
          coalesce(p_priority, 0),
          coalesce(p_max_attempts, 5),
          v_plan_id)
  returning j.id into v_job_id;

  return query select v_plan_id, v_job_id, true;
end
$$;

-- 5.2 Enqueue one job per element of a JSON array, in one statement.
create or replace function public.mealworker_enqueue_jobs(
  p_job_type text,
  p_payloads jsonb,
  p_priority int default 0,
  p_max_attempts int default 5,
  p_run_at timestamptz default null
)
returns setof bigint
language sql
volatile
set search_path = ''
as $$
  insert into public.background_jobs (job_type, payload, priority, max_attempts, run_at)
  select p_job_type, e.value, coalesce(p_priority, 0), coalesce(p_max_attempts, 5),
         coalesce(p_run_at, now())
    from jsonb_array_elements(p_payloads) with ordinality as e (value, ord)
   order by e.ord
  returning id;
$$;

-- 5.3 Claim up to p_limit runnable jobs of the given types.
-- Keep the shape `where id = any(array(select ... limit ... for update skip locked))`: a SQL
-- function runs a generic plan, and `update ... from (cte)` makes that a sequential scan.
create or replace function public.mealworker_claim_jobs(
  p_worker_id text,
  p_job_types text[],
  p_limit int,
  p_lease_seconds double precision default 300
)
returns table (
  id bigint,
  job_type text,
  payload jsonb,
  attempts int,
  max_attempts int,
  priority int,
  lease_token uuid,
  lease_expires_at timestamptz,
  meal_plan_id uuid,
  created_at timestamptz
)
language sql
volatile
set search_path = ''
as $$
  with claimed as (
    update public.background_jobs j
       set status = 'processing',
           attempts = j.attempts + 1,
           locked_by = p_worker_id,
           lease_token = gen_random_uuid(),
           lease_expires_at = now() + make_interval(secs => coalesce(p_lease_seconds, 300)),
           started_at = now(),
           updated_at = now()
     where j.id = any(array(
             select c.id
               from public.background_jobs c
              where c.status = 'pending'
                and c.run_at <= now()
                and c.job_type = any(p_job_types)
              order by c.priority desc, c.run_at, c.id
              limit greatest(p_limit, 0)
                for update skip locked))
       and j.status = 'pending'
    returning j.id, j.job_type, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at,
              j.lease_token, j.lease_expires_at, j.meal_plan_id, j.created_at
  ), plans as (
    update public.meal_plans mp
       set status = 'generating', updated_at = now()
     where mp.id = any(array(select c.meal_plan_id from claimed c where c.meal_plan_id is not null))
    returning mp.id
  )
  select c.id, c.job_type, c.payload, c.attempts, c.max_attempts, c.priority, c.lease_token,
         c.lease_expires_at, c.meal_plan_id, c.created_at
    from claimed c
   order by c.priority desc, c.run_at, c.id;
$$;

-- 5.4 Claim one job by id (run-job): a pending one regardless of run_at; with p_force also a
-- failed, completed or cancelled one, reset first. A processing job is never taken.
create or replace function public.mealworker_claim_job(
  p_job_id bigint,
  p_worker_id text,
  p_lease_seconds double precision default 300,
  p_force boolean default false
)
returns table (
  id bigint,
  job_type text,
  payload jsonb,
  attempts int,
  max_attempts int,
  priority int,
  lease_token uuid,
  lease_expires_at timestamptz,
  meal_plan_id uuid,
  created_at timestamptz
)
language plpgsql
volatile
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_status text;
  v_plan_id uuid;
  v_forced boolean;
begin
  select j.status, j.meal_plan_id into v_status, v_plan_id
    from public.background_jobs j
   where j.id = p_job_id
     for update;

  if not found or not coalesce(
       v_status = 'pending'
       or (p_force and v_status in ('failed', 'completed', 'cancelled')), false) then
    return;
  end if;
  v_forced := v_status <> 'pending';

  if v_forced then
    perform pg_catalog.set_config('mealworker.detail', '{"forced": true}', true);
  end if;
  perform pg_catalog.set_config('mealworker.worker', coalesce(p_worker_id, ''), true);

  return query
  update public.background_jobs j
     set status = 'processing',
         attempts = case when v_forced then 1 else j.attempts + 1 end,
         last_error = case when v_forced then null else j.last_error end,
         cancel_requested = false,
         finished_at = null,
         locked_by = p_worker_id,
         lease_token = gen_random_uuid(),
         lease_expires_at = now() + make_interval(secs => coalesce(p_lease_seconds, 300)),
         started_at = now(),
         updated_at = now()
   where j.id = p_job_id
  returning j.id, j.job_type, j.payload, j.attempts, j.max_attempts, j.priority, j.lease_token,
            j.lease_expires_at, j.meal_plan_id, j.created_at;

  if v_plan_id is not null then
    update public.meal_plans mp
       set status = 'generating',
           plan = case when v_forced then null else mp.plan end,
           usage = case when v_forced then null else mp.usage end,
           error = case when v_forced then null else mp.error end,
           progress = case when v_forced then '{}'::jsonb else mp.progress end,
           completed_at = case when v_forced then null else mp.completed_at end,
           updated_at = now()
     where mp.id = v_plan_id;
  end if;
end
$$;

-- 5.4b One meal plan, as the app sees it (demo, run-job and operators read it back).
create or replace function public.mealworker_get_meal_plan(p_meal_plan_id uuid)
returns table (
  id uuid,
  user_id uuid,
  status text,
  request jsonb,
  plan jsonb,
  progress jsonb,
  error text,
  usage jsonb,
  created_at timestamptz,
  updated_at timestamptz,
  completed_at timestamptz
)
language sql
stable
set search_path = ''
as $$
  select mp.id, mp.user_id, mp.status, mp.request, mp.plan, mp.progress, mp.error, mp.usage,
         mp.created_at, mp.updated_at, mp.completed_at
    from public.meal_plans mp
   where mp.id = p_meal_plan_id
$$;

-- 5.5 One job, as the operator sees it.
create or replace function public.mealworker_get_job(p_job_id bigint)
returns table (
  id bigint,
  job_type text,
  payload jsonb,
  status text,
  priority int,
  run_at timestamptz,
  attempts int,
  max_attempts int,
  locked_by text,
  lease_expires_at timestamptz,
  last_error text,
  meal_plan_id uuid,
  created_at timestamptz,
  updated_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz
)
language sql
stable
set search_path = ''
as $$
  select j.id, j.job_type, j.payload, j.status, j.priority, j.run_at, j.attempts,
         j.max_attempts, j.locked_by, j.lease_expires_at, j.last_error, j.meal_plan_id,
         j.created_at, j.updated_at, j.started_at, j.finished_at
    from public.background_jobs j
   where j.id = p_job_id;
$$;

-- 5.6 Extend the leases still held, refresh the worker row, report lost and cancelled jobs.
create or replace function public.mealworker_heartbeat(
  p_worker_id text,
  p_job_ids bigint[],
  p_lease_tokens uuid[],
  p_lease_seconds double precision,
  p_active_jobs int default 0,
  p_rss_bytes bigint default null,
  p_status text default 'running'
)
returns table (job_id bigint, reason text)
language sql
volatile
set search_path = ''
as $$
  with listed as (
    select l.job_id, l.lease_token
      from unnest(p_job_ids, p_lease_tokens) as l (job_id, lease_token)
     where l.job_id is not null
  ), extended as (
    update public.background_jobs j
       set lease_expires_at = now() + make_interval(secs => coalesce(p_lease_seconds, 300)),
           updated_at = now()
      from listed l
     where j.id = l.job_id
       and j.lease_token = l.lease_token  -- implies status = 'processing' (check constraint)
    returning j.id, j.cancel_requested
  ), seen as (
    insert into public.workers as w
           (id, status, started_at, last_seen_at, active_jobs, rss_bytes)
    values (p_worker_id, coalesce(p_status, 'running'), now(), now(),
            coalesce(p_active_jobs, 0), p_rss_bytes)
    on conflict (id) do update
       set status = excluded.status,
           last_seen_at = excluded.last_seen_at,
           active_jobs = excluded.active_jobs,
           rss_bytes = excluded.rss_bytes
    returning w.id
  ), finished_here as (
    -- Finished by this very worker while the heartbeat was on its way: not a lost lease.
    select j.id
      from listed l
      join public.background_jobs j on j.id = l.job_id
     where j.status in ('completed', 'failed', 'cancelled') and j.locked_by = p_worker_id
  ), lost as (
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select j.id, 'lease_lost', j.job_type, p_worker_id, j.attempts,
           jsonb_build_object('call', 'heartbeat', 'status', j.status, 'locked_by', j.locked_by)
      from listed l
      join public.background_jobs j on j.id = l.job_id
     where not exists (select 1 from extended e where e.id = l.job_id)
       and not exists (select 1 from finished_here f where f.id = l.job_id)
    returning 1
  )
  select l.job_id, case when e.id is null then 'lost' else 'cancelled' end
    from listed l
    left join extended e on e.id = l.job_id
   where (e.id is null or e.cancel_requested)
     and not exists (select 1 from finished_here f where f.id = l.job_id)
   order by l.job_id;
$$;

-- 5.7 Worker registry.
create or replace function public.mealworker_register_worker(
  p_worker_id text,
  p_host text,
  p_pid int,
  p_version text,
  p_max_jobs int,
  p_job_types text[]
)
returns void
language sql
volatile
set search_path = ''
as $$
  insert into public.workers as w
         (id, host, pid, version, max_jobs, job_types, status, started_at, last_seen_at,
          active_jobs, rss_bytes)
  values (p_worker_id, p_host, p_pid, p_version, p_max_jobs, p_job_types, 'running', now(),
          now(), 0, null)
  on conflict (id) do update
     set host = excluded.host,
         pid = excluded.pid,
         version = excluded.version,
         max_jobs = excluded.max_jobs,
         job_types = excluded.job_types,
         status = 'running',
         started_at = excluded.started_at,
         last_seen_at = excluded.last_seen_at,
         active_jobs = 0,
         rss_bytes = null;
$$;

create or replace function public.mealworker_stop_worker(p_worker_id text)
returns void
language sql
volatile
set search_path = ''
as $$
  update public.workers w
     set status = 'stopped', active_jobs = 0, last_seen_at = now()
   where w.id = p_worker_id;
$$;

-- 5.8 Progress of a held job, into its meal plan and the event log.
create or replace function public.mealworker_report_progress(
  p_job_id bigint,
  p_lease_token uuid,
  p_progress jsonb
)
returns boolean
language sql
volatile
set search_path = ''
as $$
  with held as (
    -- FOR SHARE: wait for a concurrent requeue/complete and re-check the lease on its result.
    select j.id, j.job_type, j.locked_by, j.attempts, j.meal_plan_id
      from public.background_jobs j
     where j.id = p_job_id
       and j.lease_token = p_lease_token  -- implies status = 'processing' (check constraint)
       for share
  ), plan as (
    update public.meal_plans mp
       set progress = coalesce(p_progress, '{}'::jsonb), status = 'generating', updated_at = now()
      from held h
     where mp.id = h.meal_plan_id
    returning mp.id
  ), progress_event as (
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select h.id, 'progress', h.job_type, h.locked_by, h.attempts, p_progress
      from held h
    returning 1
  ), lost as (
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select j.id, 'lease_lost', j.job_type, null, j.attempts,
           jsonb_build_object('call', 'report_progress', 'status', j.status,
                              'locked_by', j.locked_by)
      from public.background_jobs j
     where j.id = p_job_id
       and not exists (select 1 from held)
    returning 1
  )
  select exists (select 1 from held);
$$;

-- 5.9 Complete a batch of held jobs; their meal plans get the results in the same transaction.
create or replace function public.mealworker_complete_jobs(
  p_job_ids bigint[],
  p_lease_tokens uuid[],
  p_results jsonb[]
)
returns setof bigint
language sql
volatile
set search_path = ''
as $$
  with input as (
    select i.job_id, i.lease_token, i.result
      from unnest(p_job_ids, p_lease_tokens, p_results) as i (job_id, lease_token, result)
     where i.job_id is not null
  ), done as (
    update public.background_jobs j
       set status = 'completed',
           finished_at = now(),
           updated_at = now(),
           lease_token = null,
           lease_expires_at = null
      from input i
     where j.id = i.job_id
       and j.lease_token = i.lease_token  -- implies status = 'processing' (check constraint)
    returning j.id, j.meal_plan_id, i.result
  ), plans as (
    update public.meal_plans mp
       set status = 'completed',
           plan = d.result -> 'plan',
           usage = d.result -> 'usage',
           progress = '{"stage": "done"}'::jsonb,
           error = null,
           completed_at = now(),
           updated_at = now()
      from done d
     where mp.id = d.meal_plan_id
    returning mp.id
  ), lost as (
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select j.id, 'lease_lost', j.job_type, null, j.attempts,
           jsonb_build_object('call', 'complete', 'status', j.status, 'locked_by', j.locked_by)
      from input i
      join public.background_jobs j on j.id = i.job_id
     where not exists (select 1 from done d where d.id = i.job_id)
    returning 1
  )
  select d.id from done d order by d.id;
$$;

-- 5.10 Fail a held job: retry later (exponential backoff, capped, jittered) or fail for good.
create or replace function public.mealworker_fail_job(
  p_job_id bigint,
  p_lease_token uuid,
  p_error text,
  p_retryable boolean,
  p_backoff_base_seconds double precision default 10,
  p_backoff_max_seconds double precision default 3600
)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_job public.background_jobs%rowtype;
  v_status text;
  v_delay double precision;
begin
  select * into v_job
    from public.background_jobs j
   where j.id = p_job_id
     and j.lease_token = p_lease_token  -- implies status = 'processing' (check constraint)
     for update;

  if not found then
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select j.id, 'lease_lost', j.job_type, null, j.attempts,
           jsonb_build_object('call', 'fail', 'status', j.status, 'locked_by', j.locked_by)
      from public.background_jobs j
     where j.id = p_job_id;
    return null;
  end if;

  if v_job.cancel_requested then
    v_status := 'cancelled';
  elsif coalesce(p_retryable, false) and v_job.attempts < v_job.max_attempts then
    v_status := 'pending';
  else
    v_status := 'failed';
  end if;

  if v_status = 'pending' then
    v_delay := least(
                 coalesce(p_backoff_max_seconds, 3600),
                 coalesce(p_backoff_base_seconds, 10)
                   * power(2::double precision, least(greatest(v_job.attempts, 1) - 1, 60))
               ) * (0.75 + random() * 0.5);
    perform pg_catalog.set_config('mealworker.event', 'retry_scheduled', true);
    update public.background_jobs j
       set status = 'pending',
           run_at = now() + make_interval(secs => v_delay),
           last_error = p_error,
           locked_by = null,
           lease_token = null,
           lease_expires_at = null,
           updated_at = now()
     where j.id = p_job_id;
    update public.meal_plans mp
       set status = 'pending', error = p_error, updated_at = now()
     where mp.id = v_job.meal_plan_id;
  else
    update public.background_jobs j
       set status = v_status,
           last_error = p_error,
           lease_token = null,
           lease_expires_at = null,
           finished_at = now(),
           updated_at = now()
     where j.id = p_job_id;
    update public.meal_plans mp
       set status = v_status, error = p_error, updated_at = now()
     where mp.id = v_job.meal_plan_id;
  end if;

  return v_status;
end
$$;

-- 5.11 Graceful shutdown: held jobs go back to pending at once; the attempt does not count.
create or replace function public.mealworker_release_jobs(
  p_worker_id text,
  p_job_ids bigint[],
  p_lease_tokens uuid[]
)
returns int
language sql
volatile
set search_path = ''
as $$
  select pg_catalog.set_config('mealworker.event', 'released', true),
         pg_catalog.set_config('mealworker.worker', coalesce(p_worker_id, ''), true);

  with input as (
    select i.job_id, i.lease_token
      from unnest(p_job_ids, p_lease_tokens) as i (job_id, lease_token)
     where i.job_id is not null
  ), released as (
    update public.background_jobs j
       set status = case when j.cancel_requested then 'cancelled' else 'pending' end,
           attempts = greatest(j.attempts - 1, 0),
           run_at = least(j.run_at, now()),
           locked_by = case when j.cancel_requested then j.locked_by end,
           lease_token = null,
           lease_expires_at = null,
           finished_at = case when j.cancel_requested then now() end,
           updated_at = now()
      from input i
     where j.id = i.job_id
       and j.lease_token = i.lease_token  -- implies status = 'processing' (check constraint)
    returning j.id, j.status, j.meal_plan_id
  ), plans as (
    update public.meal_plans mp
       set status = r.status, updated_at = now()
      from released r
     where mp.id = r.meal_plan_id
    returning mp.id
  ), lost as (
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select j.id, 'lease_lost', j.job_type, p_worker_id, j.attempts,
           jsonb_build_object('call', 'release', 'status', j.status, 'locked_by', j.locked_by)
      from input i
      join public.background_jobs j on j.id = i.job_id
     where not exists (select 1 from released r where r.id = i.job_id)
    returning 1
  )
  select count(*)::int from released;
$$;

-- 5.12 Rescue jobs whose lease expired (their worker died). The expiry is checked in the
-- statement that changes them, on rows it has locked, so a job completed meanwhile is skipped.
create or replace function public.mealworker_requeue_stale(p_limit int default 1000)
returns table (job_id bigint, status text)
language sql
volatile
set search_path = ''
as $$
  with requeued as (
    update public.background_jobs j
       set status = case when j.cancel_requested then 'cancelled'
                         when j.attempts >= j.max_attempts then 'failed'
                         else 'pending' end,
           last_error = 'lease expired: worker ' || coalesce(j.locked_by, 'unknown')
                        || ' stopped heartbeating',
           locked_by = case when j.cancel_requested or j.attempts >= j.max_attempts
                            then j.locked_by end,
           run_at = least(j.run_at, now()),
           lease_token = null,
           lease_expires_at = null,
           finished_at = case when j.cancel_requested or j.attempts >= j.max_attempts
                              then now() end,
           updated_at = now()
     where j.id = any(array(
             select s.id
               from public.background_jobs s
              where s.status = 'processing'
                and s.lease_expires_at < now()
              order by s.lease_expires_at, s.id
              limit greatest(p_limit, 0)
                for update skip locked))
       and j.status = 'processing'
       and j.lease_expires_at < now()
    returning j.id, j.status, j.meal_plan_id, j.last_error
  ), plans as (
    update public.meal_plans mp
       set status = r.status, error = r.last_error, updated_at = now()
      from requeued r
     where mp.id = r.meal_plan_id
    returning mp.id
  )
  select r.id, r.status from requeued r order by r.id;
$$;

-- 5.13 Operator requeue (failed jobs by default); never touches processing jobs.
create or replace function public.mealworker_requeue_jobs(
  p_job_ids bigint[] default null,
  p_statuses text[] default array['failed'],
  p_job_type text default null,
  p_since timestamptz default null,
  p_error_contains text default null,
  p_reset_attempts boolean default false,
  p_limit int default 100,
  p_dry_run boolean default false
)
returns table (job_id bigint, job_type text, previous_status text, last_error text)
language sql
volatile
set search_path = ''
as $$
  select pg_catalog.set_config('mealworker.event', 'requeued', true),
         pg_catalog.set_config('mealworker.detail', '{"manual": true}', true);

  with by_id as (
    -- Two branches, so that a list of ids is looked up by primary key.
    select j.id, j.job_type, j.status as previous_status, j.last_error
      from public.background_jobs j
     where p_job_ids is not null
       and j.id = any(p_job_ids)
       and j.status <> 'processing'
     order by j.id
     limit p_limit
       for update skip locked
  ), by_filter as (
    select j.id, j.job_type, j.status as previous_status, j.last_error
      from public.background_jobs j
     where p_job_ids is null
       and j.status = any(coalesce(p_statuses, array['failed']))
       and j.status <> 'processing'
       and (p_job_type is null or j.job_type = p_job_type)
       and (p_since is null or j.updated_at >= p_since)
       and (p_error_contains is null
            or strpos(lower(j.last_error), lower(p_error_contains)) > 0)
     order by j.id
     limit p_limit
       for update skip locked
  ), target as (
    select * from by_id
    union all
    select * from by_filter
  ), requeued as (
    update public.background_jobs j
       set status = 'pending',
           run_at = now(),
           attempts = case when coalesce(p_reset_attempts, false) then 0 else j.attempts end,
           cancel_requested = false,
           locked_by = null,
           lease_token = null,
           lease_expires_at = null,
           finished_at = null,
           updated_at = now()
     where j.id = any(array(select t.id from target t))
       and j.status <> 'processing'
       and not coalesce(p_dry_run, false)
    returning j.id, j.meal_plan_id
  ), plans as (
    update public.meal_plans mp
       set status = 'pending',
           plan = null,
           usage = null,
           error = null,
           progress = '{}'::jsonb,
           completed_at = null,
           updated_at = now()
     where mp.id = any(array(select r.meal_plan_id from requeued r))
    returning mp.id
  )
  select t.id, t.job_type, t.previous_status, t.last_error from target t order by t.id;
$$;

-- 5.14 Cancel: pending jobs at once; processing jobs are asked to stop (see heartbeat).
create or replace function public.mealworker_cancel_jobs(p_job_ids bigint[])
returns table (job_id bigint, status text)
language sql
volatile
set search_path = ''
as $$
  with changed as (
    update public.background_jobs j
       set status = case when j.status = 'pending' then 'cancelled' else j.status end,
           cancel_requested = case when j.status = 'processing' then true
                                   else j.cancel_requested end,
           finished_at = case when j.status = 'pending' then now() else j.finished_at end,
           updated_at = now()
     where j.id = any(p_job_ids)
       and (j.status = 'pending' or (j.status = 'processing' and not j.cancel_requested))
    returning j.id, j.status, j.meal_plan_id
  ), plans as (
    update public.meal_plans mp
       set status = 'cancelled', updated_at = now()
     where mp.id = any(array(select c.meal_plan_id from changed c where c.status = 'cancelled'))
    returning mp.id
  )
  select j.id, coalesce(c.status, j.status)
    from public.background_jobs j
    left join changed c on c.id = j.id
   where j.id = any(p_job_ids)
   order by j.id;
$$;

-- 5.15 Counts for `mealworker stats`.
create or replace function public.mealworker_queue_stats()
returns jsonb
language sql
stable
set search_path = ''
as $$
  with counts as (
    select j.job_type, j.status, count(*) as n
      from public.background_jobs j
     group by j.job_type, j.status
  )
  select jsonb_build_object(
    'by_status', (
      select jsonb_object_agg(s.status, coalesce(t.n, 0) order by s.ord)
        from unnest(array['pending', 'processing', 'completed', 'failed', 'cancelled'])
             with ordinality as s (status, ord)
        left join (select c.status, sum(c.n)::bigint as n from counts c group by c.status) t
          on t.status = s.status
    ),
    'by_type', coalesce((
      select jsonb_object_agg(bt.job_type, bt.statuses order by bt.job_type)
        from (select c.job_type, jsonb_object_agg(c.status, c.n order by c.status) as statuses
                from counts c
               group by c.job_type) bt
    ), '{}'::jsonb),
    'oldest_pending_seconds', (
      select round(extract(epoch from now() - min(j.run_at))::numeric, 3)
        from public.background_jobs j
       where j.status = 'pending' and j.run_at <= now()
    ),
    'workers', coalesce((
      select jsonb_agg(to_jsonb(w) order by w.id)
        from public.workers w
       where w.last_seen_at >= now() - interval '1 hour'
    ), '[]'::jsonb)
  );
$$;

-- 5.16 The event log, for `mealworker tail`.
create or replace function public.mealworker_events_since(
  p_after_id bigint default 0,
  p_limit int default 500,
  p_job_id bigint default null
)
returns setof public.background_job_events
language sql
stable
set search_path = ''
as $$
  select e.*
    from public.background_job_events e
   where e.id > coalesce(p_after_id, 0)
     and (p_job_id is null or e.job_id = p_job_id)
   order by e.id
   limit p_limit;
$$;

-- 5.17 The Unsplash cache.
create or replace function public.mealworker_image_cache_get(p_query text)
returns table (found boolean, photo jsonb)
language sql
volatile
set search_path = ''
as $$
  with hit as (
    update public.image_cache c
       set hits = c.hits + 1, last_used_at = now()
     where c.query = p_query
    returning c.photo
  )
  select true, h.photo from hit h
  union all
  select false, null::jsonb where not exists (select 1 from hit);
$$;

create or replace function public.mealworker_image_cache_put(p_query text, p_photo jsonb)
returns void
language sql
volatile
set search_path = ''
as $$
  insert into public.image_cache as c (query, photo, hits, created_at, last_used_at)
  values (p_query, p_photo, 0, now(), now())
  on conflict (query) do update
     set photo = excluded.photo, created_at = excluded.created_at,
         last_used_at = excluded.last_used_at;
$$;

-- ---------------------------------------------------------------------------------------------
-- 6. Function privileges: the service role only.
-- ---------------------------------------------------------------------------------------------

revoke all on function public.mealworker_jobs_after_insert() from public, anon, authenticated;
revoke all on function public.mealworker_jobs_after_update() from public, anon, authenticated;
revoke all on function public.mealworker_enqueue_meal_plan(jsonb, uuid, int, text, int)
  from public, anon, authenticated;
revoke all on function public.mealworker_enqueue_jobs(text, jsonb, int, int, timestamptz)
  from public, anon, authenticated;
revoke all on function public.mealworker_claim_jobs(text, text[], int, double precision)
  from public, anon, authenticated;
revoke all on function public.mealworker_claim_job(bigint, text, double precision, boolean)
  from public, anon, authenticated;
revoke all on function public.mealworker_get_job(bigint) from public, anon, authenticated;
revoke all on function public.mealworker_get_meal_plan(uuid) from public, anon, authenticated;
revoke all on function public.mealworker_heartbeat(
  text, bigint[], uuid[], double precision, int, bigint, text) from public, anon, authenticated;
revoke all on function public.mealworker_register_worker(text, text, int, text, int, text[])
  from public, anon, authenticated;
revoke all on function public.mealworker_stop_worker(text) from public, anon, authenticated;
revoke all on function public.mealworker_report_progress(bigint, uuid, jsonb)
  from public, anon, authenticated;
revoke all on function public.mealworker_complete_jobs(bigint[], uuid[], jsonb[])
  from public, anon, authenticated;
revoke all on function public.mealworker_fail_job(
  bigint, uuid, text, boolean, double precision, double precision)
  from public, anon, authenticated;
revoke all on function public.mealworker_release_jobs(text, bigint[], uuid[])
  from public, anon, authenticated;
revoke all on function public.mealworker_requeue_stale(int) from public, anon, authenticated;
revoke all on function public.mealworker_requeue_jobs(
  bigint[], text[], text, timestamptz, text, boolean, int, boolean)
  from public, anon, authenticated;
revoke all on function public.mealworker_cancel_jobs(bigint[]) from public, anon, authenticated;
revoke all on function public.mealworker_queue_stats() from public, anon, authenticated;
revoke all on function public.mealworker_events_since(bigint, int, bigint)
  from public, anon, authenticated;
revoke all on function public.mealworker_image_cache_get(text) from public, anon, authenticated;
revoke all on function public.mealworker_image_cache_put(text, jsonb)
  from public, anon, authenticated;

grant execute on function public.mealworker_jobs_after_insert() to service_role;
grant execute on function public.mealworker_jobs_after_update() to service_role;
grant execute on function public.mealworker_enqueue_meal_plan(jsonb, uuid, int, text, int)
  to service_role;
grant execute on function public.mealworker_enqueue_jobs(text, jsonb, int, int, timestamptz)
  to service_role;
grant execute on function public.mealworker_claim_jobs(text, text[], int, double precision)
  to service_role;
grant execute on function public.mealworker_claim_job(bigint, text, double precision, boolean)
  to service_role;
grant execute on function public.mealworker_get_job(bigint) to service_role;
grant execute on function public.mealworker_get_meal_plan(uuid) to service_role;
grant execute on function public.mealworker_heartbeat(
  text, bigint[], uuid[], double precision, int, bigint, text) to service_role;
grant execute on function public.mealworker_register_worker(text, text, int, text, int, text[])
  to service_role;
grant execute on function public.mealworker_stop_worker(text) to service_role;
grant execute on function public.mealworker_report_progress(bigint, uuid, jsonb) to service_role;
grant execute on function public.mealworker_complete_jobs(bigint[], uuid[], jsonb[])
  to service_role;
grant execute on function public.mealworker_fail_job(
  bigint, uuid, text, boolean, double precision, double precision) to service_role;
grant execute on function public.mealworker_release_jobs(text, bigint[], uuid[]) to service_role;
grant execute on function public.mealworker_requeue_stale(int) to service_role;
grant execute on function public.mealworker_requeue_jobs(
  bigint[], text[], text, timestamptz, text, boolean, int, boolean) to service_role;
grant execute on function public.mealworker_cancel_jobs(bigint[]) to service_role;
grant execute on function public.mealworker_queue_stats() to service_role;
grant execute on function public.mealworker_events_since(bigint, int, bigint) to service_role;
grant execute on function public.mealworker_image_cache_get(text) to service_role;
grant execute on function public.mealworker_image_cache_put(text, jsonb) to service_role;

-- PostgREST caches the schema: make the new functions callable at once.
notify pgrst, 'reload schema';
