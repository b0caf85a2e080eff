-- mealworker: the queue's functions know jobs only; meal plans follow their jobs by trigger.
--
-- The queue's own functions (claim, complete, fail, release, requeue, cancel, progress, stats)
-- each wrote `public.meal_plans` too: the generic core knew one job type's table, and a new
-- job type could not get what meal plans got (a result written in the completion's
-- transaction, exactly once) without changing the core. Now:
--
-- * The core writes only its own tables. A job's result stays on its row (`result`, every job
--   type) and its progress too (`progress`, new: the latest a handler reported). No core
--   function reads `meal_plan_id`; those that returned it (`mealworker_claim_job`,
--   `mealworker_claim_jobs`, `mealworker_claim_next`, `mealworker_get_job`) are made again
--   without it (a result type cannot change in place), with the same grants. The meal-plan
--   and OpenAI figures of `mealworker_queue_stats` move to `mealworker_meal_plan_stats`
--   (`mealworker stats` shows both, under the same keys as before).
-- * The meal-plan domain reacts to its jobs in the same statement, by triggers on
--   `background_jobs` that fire only for rows with a `meal_plan_id`, and writes exactly what
--   the core functions wrote (same columns, same values, same `meal_plans_days_reset`):
--     - `meal_plan_jobs_status` (after update of status, for each row): claimed -> generating;
--       run again from its end (`run-job --force`) or requeued -> the plan starts over;
--       released -> the job's status; failed, retried or its lease expired -> the job's status
--       and error; cancelled while pending -> cancelled; completed -> named to the next.
--     - `meal_plan_jobs_progress` (after update of progress, for each row): the progress.
--     - `meal_plan_jobs_completed` (after update of result, for each statement): the plan and
--       its usage from the job's result, then the result cleared from the job's row, so a plan
--       (about 20 kB compressed for 7 days) is kept once, in `meal_plans`, as before. A
--       statement trigger, so that a completion runs its plan update even when it completes no
--       meal plan, as the core function did: an app's statement trigger refusing every plan
--       write still refuses every completion, which is how a worker tells "the database
--       refuses to complete jobs" from one bad row (`check_completions`). PostgreSQL gives no
--       transition table to a trigger with a column list, so `meal_plan_jobs_status` names the
--       statement's completed meal-plan jobs to it in the transaction-local setting
--       `mealworker.meal_plans_completed`. A completion of no meal plan (every one of another
--       job type) then reads no table at all: looking for the statement's plans, even through
--       a partial index, was planned as a scan of the whole table while its statistics lagged
--       (7 ms per completion at 50,000 jobs), and a join by the ids, planned once on small
--       tables, kept scanning them.
--   Row triggers, not one statement trigger for everything: a row trigger whose WHEN is false
--   costs a job of another type nothing but the test of its `meal_plan_id` (no function call,
--   no event queued). A BEFORE trigger could clear the result before it is stored, but any
--   BEFORE ROW trigger makes every update of `background_jobs` lock its row first (a WAL
--   record per row: +3-5% WAL per no-op job, measured), whatever its WHEN.
--
-- An app's trigger on `meal_plans` that refuses a write refuses the job's statement as before,
-- with its own words: the worker fails that job alone.
--
-- The whole change is one file, so one transaction: no completion can land between the core
-- no longer writing plans and the domain writing them.

-- ---------------------------------------------------------------------------------------------
-- 1. The job's progress, and what the domain owns on the queue's table.
-- ---------------------------------------------------------------------------------------------

alter table public.background_jobs add column if not exists progress jsonb;

comment on column public.background_jobs.progress is
  'The latest progress the job''s handler reported (mealworker_report_progress); null before '
  'its first report, and again when the job is run afresh.';

comment on column public.background_jobs.meal_plan_id is
  'Owned by the meal-plan domain: the plan a generate_meal_plan job makes. The queue''s '
  'functions never read it; the domain''s triggers on this table (meal_plan_jobs_*) mirror '
  'the job into meal_plans through it.';

-- ---------------------------------------------------------------------------------------------
-- 2. The meal-plan domain follows its jobs.
-- ---------------------------------------------------------------------------------------------

create or replace function public.mealworker_meal_plan_follow_job()
returns trigger
language plpgsql
volatile
set search_path = ''
as $$
begin
  if new.status = 'completed' then
    -- Saved by `meal_plan_jobs_completed` at the end of the statement: named to it here.
    perform pg_catalog.set_config(
      'mealworker.meal_plans_completed',
      pg_catalog.concat_ws(
        ',', nullif(pg_catalog.current_setting('mealworker.meal_plans_completed', true), ''),
        new.id),
      true);
  elsif new.status = 'processing' then
    if old.status = 'pending' then  -- claimed
      update public.meal_plans mp
         set status = 'generating', updated_at = now()
       where mp.id = new.meal_plan_id;
    else  -- run again from where it ended (`run-job --force`): the plan starts over
      update public.meal_plans mp
         set status = 'generating',
             plan = null,
             usage = null,
             error = null,
             progress = '{}'::jsonb,
             completed_at = null,
             updated_at = now()
       where mp.id = new.meal_plan_id;
    end if;
  elsif old.status = 'processing' then
    if new.attempts < old.attempts then
      -- Released (a worker stopping): the attempt is handed back and no error is told.
      update public.meal_plans mp
         set status = new.status, updated_at = now()
       where mp.id = new.meal_plan_id;
    else  -- failed, retried later, cancelled at its worker, or its lease expired
      update public.meal_plans mp
         set status = new.status, error = new.last_error, updated_at = now()
       where mp.id = new.meal_plan_id;
    end if;
  elsif new.status = 'pending' then  -- requeued, from its end or while waiting
    update public.meal_plans mp
       set status = 'pending',
           plan = null,
           usage = null,
           error = null,
           progress = '{}'::jsonb,
           completed_at = null,
           updated_at = now()
     where mp.id = new.meal_plan_id;
  elsif new.status = 'cancelled' then  -- cancelled while waiting
    update public.meal_plans mp
       set status = 'cancelled', updated_at = now()
     where mp.id = new.meal_plan_id;
  end if;
  return null;
end
$$;

-- A pending job whose status is set again is being requeued (no queue function sets a waiting
-- job's status otherwise).
create or replace trigger meal_plan_jobs_status
  after update of status on public.background_jobs
  for each row
  when (new.meal_plan_id is not null
        and (old.status is distinct from new.status or new.status = 'pending'))
  execute function public.mealworker_meal_plan_follow_job();

create or replace function public.mealworker_meal_plan_progress()
returns trigger
language plpgsql
volatile
set search_path = ''
as $$
begin
  update public.meal_plans mp
     set progress = coalesce(new.progress, '{}'::jsonb), status = 'generating', updated_at = now()
   where mp.id = new.meal_plan_id;
  return null;
end
$$;

create or replace trigger meal_plan_jobs_progress
  after update of progress on public.background_jobs
  for each row
  when (new.meal_plan_id is not null and old.status = 'processing' and new.status = 'processing')
  execute function public.mealworker_meal_plan_progress();

create or replace function public.mealworker_meal_plan_complete()
returns trigger
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_jobs bigint[] := pg_catalog.string_to_array(
    nullif(pg_catalog.current_setting('mealworker.meal_plans_completed', true), ''), ',');
begin
  if v_jobs is null then
    -- No meal plan completed: the plans' update still runs, of no row, as it did in the
    -- queue's function (see the header). It reads no table and has no parameter to plan for.
    update public.meal_plans mp
       set status = 'completed', plan = null, usage = null, progress = '{"stage": "done"}'::jsonb,
           error = null, completed_at = now(), updated_at = now()
     where false;
    return null;
  end if;
  perform pg_catalog.set_config('mealworker.meal_plans_completed', '', true);

  update public.meal_plans mp
     set status = 'completed',
         plan = j.result -> 'plan',
         usage = j.result -> 'usage',
         progress = '{"stage": "done"}'::jsonb,
         error = null,
         completed_at = now(),
         updated_at = now()
    from public.background_jobs j
   where j.id = any(v_jobs)
     and mp.id = j.meal_plan_id;

  -- Saved: the plan is kept once. Fires this trigger once more, with nothing to save.
  update public.background_jobs j
     set result = null
   where j.id = any(v_jobs) and j.result is not null;
  return null;
end
$$;

-- Named to fire after `background_jobs_events_update` (triggers fire in name order), so that
-- the completion's events take their fast path before the result is cleared.
create or replace trigger meal_plan_jobs_completed
  after update of result on public.background_jobs
  for each statement
  execute function public.mealworker_meal_plan_complete();

-- The meal-plan and OpenAI figures `mealworker_queue_stats` had: `mealworker stats` shows both.
create or replace function public.mealworker_meal_plan_stats()
returns jsonb
language sql
stable
set search_path = ''
as $$
  with completed_plans as (
    select mp.usage
      from public.meal_plans mp
     where mp.status = 'completed' and mp.completed_at > now() - interval '24 hours'
  ), openai as (
    select count(*) as n,
           coalesce(sum((p.usage ->> 'input_tokens')::bigint), 0) as input_tokens,
           coalesce(sum((p.usage ->> 'output_tokens')::bigint), 0) as output_tokens,
           coalesce(sum((p.usage ->> 'cost_usd')::numeric), 0) as cost_usd
      from completed_plans p
     where coalesce((p.usage ->> 'calls')::int, 0) > 0
        or coalesce((p.usage ->> 'input_tokens')::bigint, 0) > 0
  )
  select jsonb_build_object(
    'plans_24h', (select count(*) from completed_plans),
    'openai_24h', (
      select jsonb_build_object(
        'plans', o.n, 'input_tokens', o.input_tokens, 'output_tokens', o.output_tokens,
        'cost_usd', o.cost_usd,
        'cost_per_plan_usd', case when o.n > 0 then round(o.cost_usd / o.n, 6) end)
        from openai o
    )
  )
$$;

revoke all on function public.mealworker_meal_plan_follow_job() from public, anon, authenticated;
grant execute on function public.mealworker_meal_plan_follow_job() to service_role;
revoke all on function public.mealworker_meal_plan_progress() from public, anon, authenticated;
grant execute on function public.mealworker_meal_plan_progress() to service_role;
revoke all on function public.mealworker_meal_plan_complete() from public, anon, authenticated;
grant execute on function public.mealworker_meal_plan_complete() to service_role;
revoke all on function public.mealworker_meal_plan_stats() from public, anon, authenticated;
grant execute on function public.mealworker_meal_plan_stats() to service_role;

-- ---------------------------------------------------------------------------------------------
-- 3. The queue's functions, on the queue's tables only. Apart from what the header says, each
--    does what it did: same rows, same events, same results.
-- ---------------------------------------------------------------------------------------------

drop function if exists public.mealworker_claim_next(
  text, text[], int, double precision, bigint[], uuid[], jsonb[]);
drop function if exists public.mealworker_claim_jobs(text, text[], int, double precision);
drop function if exists public.mealworker_claim_job(bigint, text, double precision, boolean);
drop function if exists public.mealworker_get_job(bigint);

create function public.mealworker_claim_jobs(
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
  created_at timestamptz
)
language plpgsql
volatile
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
  perform pg_catalog.set_config(
    'mealworker.transition',
    'claimed/pending/processing/' || pg_catalog.statement_timestamp()::text,
    true);
  return query
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
                 from (select distinct t.job_type
                         from pg_catalog.unnest(p_job_types) as t (job_type)) t
                cross join lateral (
                       select x.id, x.priority, x.run_at
                         from public.background_jobs x
                        where x.status = 'pending'
                          and x.job_type = t.job_type
                          and x.run_at <= now()
                        order by x.priority desc, x.run_at, x.id
                        limit greatest(p_limit, 0)
                          for update skip locked) c
                order by c.priority desc, c.run_at, c.id
                limit greatest(p_limit, 0)))
      returning j.id, j.job_type, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at,
                j.lease_token, j.lease_expires_at, j.created_at
    )
    select c.id, c.job_type, c.payload, c.attempts, c.max_attempts, c.priority, c.lease_token,
           c.lease_expires_at, c.created_at
      from claimed c
     order by c.priority desc, c.run_at, c.id;
end
$$;

create function public.mealworker_claim_next(
  p_worker_id text,
  p_job_types text[],
  p_limit int,
  p_lease_seconds double precision default 300,
  p_job_ids bigint[] default '{}',
  p_lease_tokens uuid[] default '{}',
  p_results jsonb[] default '{}'
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
  created_at timestamptz,
  completed bigint
)
language plpgsql
volatile
set search_path = ''
as $$
#variable_conflict use_column
begin
  if coalesce(cardinality(p_job_ids), 0) > 0 then
    return query
      select null::bigint, null::text, null::jsonb, null::int, null::int, null::int, null::uuid,
             null::timestamptz, null::timestamptz, c.job_id
        from public.mealworker_complete_jobs(p_job_ids, p_lease_tokens, p_results) as c (job_id);
  else
    perform pg_catalog.set_config('synchronous_commit', 'off', true);
  end if;

  return query
    select c.id, c.job_type, c.payload, c.attempts, c.max_attempts, c.priority, c.lease_token,
           c.lease_expires_at, c.created_at, null::bigint
      from public.mealworker_claim_jobs(p_worker_id, p_job_types, p_limit, p_lease_seconds) c;
end
$$;

create function public.mealworker_claim_job(
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
  created_at timestamptz
)
language plpgsql
volatile
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_status text;
  v_forced boolean;
begin
  select j.status into v_status
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
         progress = case when v_forced then null else j.progress end,
         cancel_requested = false,
         finished_at = null,
         locked_by = p_worker_id,
         lease_token = gen_random_uuid(),
         lease_expires_at = now() + make_interval(secs => coalesce(p_lease_seconds, 300)),
         started_at = now(),
         updated_at = now()
   where j.id = p_job_id
  returning j.id, j.job_type, j.payload, j.attempts, j.max_attempts, j.priority, j.lease_token,
            j.lease_expires_at, j.created_at;
end
$$;

create function public.mealworker_get_job(p_job_id bigint)
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
         j.max_attempts, j.locked_by, j.lease_expires_at, j.last_error,
         j.created_at, j.updated_at, j.started_at, j.finished_at
    from public.background_jobs j
   where j.id = p_job_id;
$$;

revoke all on function public.mealworker_claim_jobs(text, text[], int, double precision)
  from public, anon, authenticated;
grant execute on function public.mealworker_claim_jobs(text, text[], int, double precision)
  to service_role;
revoke all on function public.mealworker_claim_next(
  text, text[], int, double precision, bigint[], uuid[], jsonb[])
  from public, anon, authenticated;
grant execute on function public.mealworker_claim_next(
  text, text[], int, double precision, bigint[], uuid[], jsonb[])
  to service_role;
revoke all on function public.mealworker_claim_job(bigint, text, double precision, boolean)
  from public, anon, authenticated;
grant execute on function public.mealworker_claim_job(bigint, text, double precision, boolean)
  to service_role;
revoke all on function public.mealworker_get_job(bigint) from public, anon, authenticated;
grant execute on function public.mealworker_get_job(bigint) to service_role;

-- Every job's result is kept on its row (the domain clears a meal plan's once it is saved).
create or replace function public.mealworker_complete_jobs(
  p_job_ids bigint[],
  p_lease_tokens uuid[],
  p_results jsonb[]
)
returns setof bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_done bigint[];
begin
  perform pg_catalog.set_config(
    'mealworker.transition',
    'completed/processing/completed/' || pg_catalog.statement_timestamp()::text,
    true);
  with input as (
    select i.job_id, i.lease_token, i.result
      from unnest(p_job_ids, p_lease_tokens, p_results) as i (job_id, lease_token, result)
     where i.job_id is not null
  ), done as (
    update public.background_jobs j
       set status = 'completed',
           result = i.result,
           finished_at = now(),
           updated_at = now(),
           lease_token = null,
           lease_expires_at = null
      from input i
     where j.id = any(array(select x.job_id from input x))
       and j.id = i.job_id
       and j.lease_token = i.lease_token  -- implies status = 'processing' (check constraint)
    returning j.id
  )
  select coalesce(pg_catalog.array_agg(d.id order by d.id), '{}') into v_done from done d;

  if pg_catalog.cardinality(v_done)
     < pg_catalog.cardinality(pg_catalog.array_remove(p_job_ids, null)) then
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select j.id, 'lease_lost', j.job_type, null, j.attempts,
           jsonb_build_object('call', 'complete', 'status', j.status, 'locked_by', j.locked_by)
      from unnest(p_job_ids) as i (job_id)
      join public.background_jobs j on j.id = i.job_id
     where not (i.job_id = any(v_done));
  end if;

  return query select pg_catalog.unnest(v_done);
end
$$;

-- The progress goes to the job's row (an update: it waits for a concurrent requeue or
-- completion and checks the lease on its result, as the `for share` read did).
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
    update public.background_jobs j
       set progress = p_progress
     where j.id = p_job_id
       and j.lease_token = p_lease_token  -- implies status = 'processing' (check constraint)
    returning j.id, j.job_type, j.locked_by, j.attempts
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
  else
    update public.background_jobs j
       set status = v_status,
           last_error = p_error,
           lease_token = null,
           lease_expires_at = null,
           finished_at = now(),
           updated_at = now()
     where j.id = p_job_id;
  end if;

  return v_status;
end
$$;

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
    returning j.id
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
    returning j.id, j.status
  )
  select r.id, r.status from requeued r order by r.id;
$$;

-- A requeued job starts with no progress, as a forced claim does.
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
           progress = null,
           updated_at = now()
     where j.id = any(array(select t.id from target t))
       and j.status <> 'processing'
       and not coalesce(p_dry_run, false)
    returning j.id
  )
  select t.id, t.job_type, t.previous_status, t.last_error from target t order by t.id;
$$;

create or replace function public.mealworker_cancel_jobs(p_job_ids bigint[])
returns table (job_id bigint, status text, previous_status text, outcome text)
language sql
volatile
set search_path = ''
as $$
  with before as (
    select j.id, j.status, j.cancel_requested
      from public.background_jobs j
     where j.id = any(p_job_ids)
     order by j.id
       for update
  ), changed as (
    update public.background_jobs j
       set status = case when j.status = 'pending' then 'cancelled' else j.status end,
           cancel_requested = case when j.status = 'processing' then true
                                   else j.cancel_requested end,
           finished_at = case when j.status = 'pending' then now() else j.finished_at end,
           updated_at = now()
      from before b
     where j.id = b.id
       and (b.status = 'pending' or (b.status = 'processing' and not b.cancel_requested))
    returning j.id, j.status
  )
  select b.id,
         coalesce(c.status, b.status),
         b.status,
         case when b.status = 'pending' then 'cancelled'
              when b.status = 'processing' and not b.cancel_requested then 'cancel_requested'
              when b.status = 'processing' then 'already_requested'
              when b.status = 'cancelled' then 'already_cancelled'
              else 'finished' end
    from before b
    left join changed c on c.id = b.id
   order by b.id;
$$;

-- The queue's own figures; the meal plans' are `mealworker_meal_plan_stats`.
create or replace function public.mealworker_queue_stats()
returns jsonb
language sql
stable
set search_path = ''
as $$
  with jobs as (
    select j.status, j.job_type, count(*) as n
      from public.background_jobs j
     group by rollup (j.status, j.job_type)
  ), recent as (
    select e.event, e.created_at, e.detail
      from public.background_job_events e
     where e.created_at > now() - interval '24 hours'
       and e.event in ('completed', 'failed', 'retry_scheduled')
  ), durations as (
    select extract(epoch from (j.finished_at - j.started_at)) as seconds
      from public.background_jobs j
     where j.status = 'completed' and j.finished_at > now() - interval '24 hours'
       and j.started_at is not null
  ), errors as (
    select coalesce(e.detail ->> 'last_error', '(no message)') as message,
           count(*) as n,
           max(e.created_at) as last_at
      from recent e
     where e.event in ('failed', 'retry_scheduled')
     group by 1
     order by n desc, last_at desc
     limit 10
  )
  select jsonb_build_object(
    'by_status', (
      select jsonb_object_agg(s.status, coalesce(j.n, 0))
        from unnest(array['pending', 'processing', 'completed', 'failed', 'cancelled']) s (status)
        left join jobs j on j.status = s.status and j.job_type is null
    ),
    'by_type', coalesce((
      select jsonb_object_agg(t.job_type, t.counts)
        from (select j.job_type, jsonb_object_agg(j.status, j.n) as counts
                from jobs j
               where j.status is not null and j.job_type is not null
               group by j.job_type) t
    ), '{}'::jsonb),
    'oldest_pending_seconds', (
      select extract(epoch from now() - min(j.run_at))
        from public.background_jobs j
       where j.status = 'pending' and j.run_at <= now()
    ),
    'completed', jsonb_build_object(
      '5m', (select count(*) from recent where event = 'completed'
              and created_at > now() - interval '5 minutes'),
      '1h', (select count(*) from recent where event = 'completed'
              and created_at > now() - interval '1 hour'),
      '24h', (select count(*) from recent where event = 'completed')
    ),
    'failed', jsonb_build_object(
      '1h', (select count(*) from recent where event = 'failed'
              and created_at > now() - interval '1 hour'),
      '24h', (select count(*) from recent where event = 'failed')
    ),
    'retried', jsonb_build_object(
      '1h', (select count(*) from recent where event = 'retry_scheduled'
              and created_at > now() - interval '1 hour'),
      '24h', (select count(*) from recent where event = 'retry_scheduled')
    ),
    'processing_seconds', (
      select jsonb_build_object(
        'p50', percentile_cont(0.5) within group (order by seconds),
        'p95', percentile_cont(0.95) within group (order by seconds),
        'max', max(seconds))
        from durations
    ),
    'recent_errors', coalesce((
      select jsonb_agg(jsonb_build_object('message', e.message, 'count', e.n, 'last_at', e.last_at))
        from errors e
    ), '[]'::jsonb),
    'workers', coalesce((
      select jsonb_agg(jsonb_build_object(
               'id', w.id, 'host', w.host, 'pid', w.pid, 'version', w.version,
               'status', w.status, 'started_at', w.started_at, 'last_seen_at', w.last_seen_at,
               'seconds_since_seen', extract(epoch from now() - w.last_seen_at),
               'active_jobs', w.active_jobs, 'max_jobs', w.max_jobs, 'rss_bytes', w.rss_bytes)
             order by w.last_seen_at desc)
        from public.workers w
       where w.last_seen_at > now() - interval '24 hours'
    ), '[]'::jsonb)
  )
$$;

notify pgrst, 'reload schema';
