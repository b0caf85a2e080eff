-- mealworker: a completion reads each of its jobs once, and looks for lost leases only when
-- one was lost.
--
-- `mealworker_complete_jobs` joined its input to `background_jobs` and then, in the same
-- statement, looked for the input rows that did not complete (`lease_lost` events): one more
-- probe of `background_jobs` per job, and an anti-join against the completed rows that the
-- planner, which counts a CTE's rows as one, ran as a nested loop: 250 x 250 comparisons for a
-- batch of 250, half of the call's time. On a table of a few ten thousand rows it also chose a
-- sequential scan of the whole table, per batch, to find the jobs. Almost every batch completes
-- every job it is given, so all of that was spent to find nothing.
--
-- Now the update finds its jobs through the primary key (`id = any(array(...))`, planned as an
-- index scan whatever the table's size), and the lost leases are looked for only when fewer jobs
-- completed than were given. The same rows are written, the same events, the same result (the
-- completed ids in order). A `lease_lost` event is now written after the batch's `completed`
-- events rather than before; they concern different jobs. The function keeps its name,
-- parameters and result; `create or replace` keeps its grants.

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
           result = case when j.meal_plan_id is null then i.result end,
           finished_at = now(),
           updated_at = now(),
           lease_token = null,
           lease_expires_at = null
      from input i
     where j.id = any(array(select x.job_id from input x))
       and j.id = i.job_id
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
