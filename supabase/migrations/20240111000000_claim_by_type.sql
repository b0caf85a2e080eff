-- mealworker: a claim reads only the pending jobs of the types it asks for.
--
-- The claim walked the pending jobs in claim order (priority, then run_at) and skipped, one
-- heap fetch each, those of a type the worker does not handle. A backlog of another type (its
-- workers down, or a type nobody runs yet) sat in front of every claim: 100,000 such jobs made
-- each claim of the meal-plan worker take 12 ms instead of 0.3 ms, on every poll of every
-- worker, and the cost grew with the backlog.
--
-- The claim index now leads with the job type, and the claim reads each asked-for type on its
-- own (one index range per type, in claim order, locked with `skip locked` as before) and
-- keeps the best `p_limit` of them, so what it reads no longer depends on other types'
-- backlogs. The order is the same: highest priority, then oldest run_at, then id, across all
-- the types asked for. With several types that each have `p_limit` jobs waiting, the rows read
-- but not kept stay locked until the claim's transaction ends (milliseconds); another
-- worker's claim meanwhile skips them, as it skips any locked row.
--
-- The claim keeps one cached plan (`plan_cache_mode = force_generic_plan`, for this function
-- only). Left to choose, PostgreSQL priced the generic plan of the per-type form above the
-- custom ones and planned it again on every call: a claim of 10 jobs took 0.47 ms instead of
-- 0.33, the time a notified worker waits before its job starts. The generic plan is the same
-- shape whatever the types and the limit (one index range per type), so nothing is lost.
--
-- The old index is dropped only when it is exactly the one the first migration made (same
-- name, same definition). An index of the operator's own, under that name or any other, stays.
-- The function keeps its name, parameters and result; its grants are kept by
-- `create or replace`.

create index if not exists background_jobs_claim_by_type_idx
  on public.background_jobs (job_type, priority desc, run_at, id)
  where status = 'pending';

do $$
begin
  if exists (
    select 1
      from pg_catalog.pg_indexes i
     where i.schemaname = 'public'
       and i.indexname = 'background_jobs_claim_idx'
       and i.indexdef = 'CREATE INDEX background_jobs_claim_idx ON public.background_jobs '
                        'USING btree (priority DESC, run_at, id) '
                        'WHERE (status = ''pending''::text)'
  ) then
    drop index public.background_jobs_claim_idx;
  end if;
end
$$;

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
language plpgsql
volatile
set search_path = ''
set plan_cache_mode = 'force_generic_plan'
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
                j.lease_token, j.lease_expires_at, j.meal_plan_id, j.created_at
    ), plans as (
      update public.meal_plans mp
         set status = 'generating', updated_at = now()
       where mp.id = any(array(
               select c.meal_plan_id from claimed c where c.meal_plan_id is not null))
      returning mp.id
    )
    select c.id, c.job_type, c.payload, c.attempts, c.max_attempts, c.priority, c.lease_token,
           c.lease_expires_at, c.meal_plan_id, c.created_at
      from claimed c
     order by c.priority desc, c.run_at, c.id;
end
$$;
