-- `requeue --waiting`: the jobs that wait with a reason run now.
--
-- A deferred job (a daily OpenAI cap reached, `mealworker_defer_job`) waits until the next UTC
-- midnight. An operator who raises the cap, or who knows the reason has passed, had to requeue
-- such jobs one id at a time. `p_waiting` keeps the filter branch to pending jobs that wait
-- with a reason (`wait_reason`) for a later time; requeued, their reason is cleared by
-- `background_jobs_wait_reason_clear` (the run time moves earlier) and the domain's
-- `meal_plan_jobs_status` trigger puts the meal plan back to plain `pending`, its saved days
-- kept. Jobs waiting on a retry's backoff have no reason and are left alone.

drop function if exists public.mealworker_requeue_jobs(
  bigint[], text[], text, timestamptz, text, boolean, int, boolean);

create or replace function public.mealworker_requeue_jobs(
  p_job_ids bigint[] default null,
  p_statuses text[] default null,
  p_job_type text default null,
  p_since timestamptz default null,
  p_error_contains text default null,
  p_reset_attempts boolean default false,
  p_limit int default 100,
  p_dry_run boolean default false,
  p_waiting boolean default false
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
       and j.status = any(coalesce(p_statuses, array['failed', 'cancelled', 'pending']))
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
       and (not coalesce(p_waiting, false)
            or (j.wait_reason is not null and j.run_at > now()))
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

revoke all on function public.mealworker_requeue_jobs(bigint[], text[], text, timestamptz, text,
  boolean, int, boolean, boolean) from public, anon, authenticated;
grant execute on function public.mealworker_requeue_jobs(bigint[], text[], text, timestamptz, text,
  boolean, int, boolean, boolean) to service_role;

notify pgrst, 'reload schema';
