-- mealworker: jobs of any type, enqueued one at a time with an idempotency key.
--
-- `mealworker_enqueue_jobs` already takes any job type, a priority and a run_at (delayed jobs);
-- what a program embedding mealworker also needs is "enqueue this at most once" for its own
-- job types, as `mealworker_enqueue_meal_plan` does for meal plans. The key is scoped to the job
-- type. And a handler's result is kept in the job's new `result` column. Nothing existing is
-- dropped or rewritten: two nullable columns, one partial unique index, one new function, and
-- `mealworker_complete_jobs` replaced with the same signature.

alter table public.background_jobs add column if not exists idempotency_key text;

-- A job's result, as its handler returned it (a meal plan's goes into its meal_plans row).
alter table public.background_jobs add column if not exists result jsonb;

create unique index if not exists background_jobs_type_idempotency_key
  on public.background_jobs (job_type, idempotency_key)
  where idempotency_key is not null;

-- Enqueue one job; with a key already used for this job type, return that job instead.
create or replace function public.mealworker_enqueue_job(
  p_job_type text,
  p_payload jsonb default '{}',
  p_priority int default 0,
  p_max_attempts int default 5,
  p_run_at timestamptz default null,
  p_idempotency_key text default null
)
returns table (job_id bigint, created boolean)
language plpgsql
volatile
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_job_id bigint;
begin
  insert into public.background_jobs as j
         (job_type, payload, priority, max_attempts, run_at, idempotency_key)
  values (p_job_type, coalesce(p_payload, '{}'::jsonb), coalesce(p_priority, 0),
          coalesce(p_max_attempts, 5), coalesce(p_run_at, now()), p_idempotency_key)
  on conflict (job_type, idempotency_key) where idempotency_key is not null do nothing
  returning j.id into v_job_id;

  if v_job_id is null then
    select j.id into v_job_id
      from public.background_jobs j
     where j.job_type = p_job_type and j.idempotency_key = p_idempotency_key;
    return query select v_job_id, false;
    return;
  end if;
  return query select v_job_id, true;
end
$$;

-- Complete a batch of held jobs, as before, now also keeping each result (any job type).
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
           result = case when j.meal_plan_id is null then i.result end,
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

revoke all on function public.mealworker_enqueue_job(text, jsonb, int, int, timestamptz, text)
  from public, anon, authenticated;
grant execute on function public.mealworker_enqueue_job(text, jsonb, int, int, timestamptz, text)
  to service_role;

notify pgrst, 'reload schema';
