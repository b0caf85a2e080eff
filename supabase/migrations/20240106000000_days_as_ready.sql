-- The first day visible early: while a plan is generated, each validated day is written into
-- `meal_plans.days` as it is ready, so the app can show day 1 long before the week is done.
--
-- `days` is a jsonb object keyed by the day's number ("1", "2", ...), each value that day as it
-- will appear in the finished plan (photos are added later, with the whole plan). Days are
-- published each at its own key as they complete, in whatever order that is (the worker starts
-- them together; day 1 is not held back for, nor holds back, the others), and a day written again
-- (the planner rewrote it for variety) replaces its earlier version. The owner reads the column
-- through the table's RLS policy, and Realtime delivers each change (meal_plans is in the
-- supabase_realtime publication).
--
-- `days` exists only while the plan is `generating`: any change to another status clears it in
-- the same statement (a trigger), so completion replaces the partial days with `plan` atomically,
-- and a failed, retried, cancelled or requeued plan shows no days from a previous attempt.

alter table public.meal_plans add column if not exists days jsonb;

comment on column public.meal_plans.days is
  'Days ready so far while the plan is generating, keyed by day number; null otherwise.';

create or replace function public.mealworker_meal_plan_days_reset()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.days := null;
  return new;
end;
$$;

create or replace trigger meal_plans_days_reset
  before update on public.meal_plans
  for each row
  when (new.days is not null and new.status is distinct from 'generating')
  execute function public.mealworker_meal_plan_days_reset();

-- Days of a held job's meal plan, merged into `days` (fenced by the lease like progress).
-- p_days: {"<day number>": <day>, ...}. Returns false when the lease is gone (the result of a
-- worker that lost its job is dropped), true otherwise.
create or replace function public.mealworker_report_days(
  p_job_id bigint,
  p_lease_token uuid,
  p_days jsonb
)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_meal_plan_id uuid;
begin
  if jsonb_typeof(p_days) is distinct from 'object'
     or exists (select 1 from jsonb_object_keys(p_days) k where k !~ '^[1-9][0-9]{0,2}$') then
    raise exception 'p_days must be an object keyed by day number, e.g. {"1": {...}}'
      using errcode = '22023';
  end if;
  -- FOR SHARE: wait for a concurrent requeue/complete and re-check the lease on its result.
  select j.meal_plan_id into v_meal_plan_id
    from public.background_jobs j
   where j.id = p_job_id
     and j.lease_token = p_lease_token  -- implies status = 'processing' (check constraint)
     for share;
  if not found then
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select j.id, 'lease_lost', j.job_type, null, j.attempts,
           jsonb_build_object('call', 'report_days', 'status', j.status, 'locked_by', j.locked_by)
      from public.background_jobs j
     where j.id = p_job_id;
    return false;
  end if;
  update public.meal_plans mp
     set days = coalesce(mp.days, '{}'::jsonb) || p_days,
         status = 'generating',
         updated_at = now()
   where mp.id = v_meal_plan_id
     and mp.status in ('pending', 'generating');  -- never revive a cancelled plan
  return true;
end;
$$;

revoke all on function public.mealworker_meal_plan_days_reset() from public, anon, authenticated;
grant execute on function public.mealworker_meal_plan_days_reset() to service_role;
revoke all on function public.mealworker_report_days(bigint, uuid, jsonb)
  from public, anon, authenticated;
grant execute on function public.mealworker_report_days(bigint, uuid, jsonb) to service_role;
