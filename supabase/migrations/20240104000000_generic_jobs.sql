-- mealworker: jobs of any type, enqueued one at a time with an idempotency key.
--
-- `mealworker_enqueue_jobs` already takes any job type, a priority and a run_at (delayed jobs);
-- what a program embedding mealworker also needs is "enqueue this at most once" for its own
-- job types, as `mealworker_enqueue_meal_plan` does for meal plans. The key is scoped to the job
-- type. Nothing existing is changed: one nullable column, one partial unique index, one function.

alter table public.background_jobs add column if not exists idempotency_key text;

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

revoke all on function public.mealworker_enqueue_job(text, jsonb, int, int, timestamptz, text)
  from public, anon, authenticated;
grant execute on function public.mealworker_enqueue_job(text, jsonb, int, int, timestamptz, text)
  to service_role;

notify pgrst, 'reload schema';
