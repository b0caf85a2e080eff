-- A retried plan resumes from the days it has already validated and saved.
--
-- `meal_plans.days` was cleared whenever the plan left `generating`, a retry included: a job
-- retried after day 6 of 7 (a rate limit, a crash, a lost lease) paid for all seven days
-- again, which was most of what a fleet meeting its OpenAI limit spent (187,000 tokens per
-- completed plan against 111,000). The days now survive a return to `pending` (retry,
-- release, requeue); the next attempt reads them back (`mealworker_saved_days`, fenced by its
-- lease), checks each one again with the validator, and writes only the days missing. They are
-- still cleared when the plan ends (completed: `plan` replaces them; failed; cancelled).

create or replace trigger meal_plans_days_reset
  before update on public.meal_plans
  for each row
  when (new.days is not null and new.status in ('completed', 'failed', 'cancelled'))
  execute function public.mealworker_meal_plan_days_reset();

-- The days saved so far for the meal plan of a job this worker holds (null when none, or when
-- the lease is not held: a worker that lost the job must not build on it).
create or replace function public.mealworker_saved_days(p_job_id bigint, p_lease_token uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select mp.days
    from public.background_jobs j
    join public.meal_plans mp on mp.id = j.meal_plan_id
   where j.id = p_job_id
     and j.lease_token = p_lease_token;
$$;

revoke all on function public.mealworker_saved_days(bigint, uuid) from public, anon, authenticated;
grant execute on function public.mealworker_saved_days(bigint, uuid) to service_role;

notify pgrst, 'reload schema';
