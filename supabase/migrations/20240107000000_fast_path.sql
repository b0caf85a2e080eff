-- mealworker: the worker's hot path in one round trip.
--
-- A busy worker writes a batch of results and claims the next batch at the same moment (the
-- finished jobs freed the slots). `mealworker_claim_next` does both in one call and one
-- transaction: it completes the given jobs through `mealworker_complete_jobs` (same lease-token
-- fencing, same statement-level event trigger, same `lease_lost` events) and then claims through
-- `mealworker_claim_jobs` (same plan: `id = any(array(... for update skip locked))`, same
-- events). Nothing existing changes; each state change is still made by the function that owns it.
--
-- A call that only claims commits asynchronously (`synchronous_commit = off` for this
-- transaction): the claim is visible to every session at once, and the next synchronous commit
-- (any completion, heartbeat or enqueue) makes it durable. A server crash in between can only
-- forget the claim: the job is `pending` again and the worker's later writes about it are
-- refused by the fencing, so no result is lost or written twice. It takes the WAL flush out of
-- the time between a job's NOTIFY and its handler's start. Completing calls commit as before.
--
-- It returns one row per accepted completion (only `completed` set: the job id), then one row
-- per claimed job (`completed` null).
create or replace function public.mealworker_claim_next(
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
  meal_plan_id uuid,
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
             null::timestamptz, null::uuid, null::timestamptz, c.job_id
        from public.mealworker_complete_jobs(p_job_ids, p_lease_tokens, p_results) as c (job_id);
  else
    perform pg_catalog.set_config('synchronous_commit', 'off', true);
  end if;

  return query
    select c.id, c.job_type, c.payload, c.attempts, c.max_attempts, c.priority, c.lease_token,
           c.lease_expires_at, c.meal_plan_id, c.created_at, null::bigint
      from public.mealworker_claim_jobs(p_worker_id, p_job_types, p_limit, p_lease_seconds) c;
end
$$;

revoke all on function public.mealworker_claim_next(
  text, text[], int, double precision, bigint[], uuid[], jsonb[]) from public, anon, authenticated;
grant execute on function public.mealworker_claim_next(
  text, text[], int, double precision, bigint[], uuid[], jsonb[]) to service_role;

notify pgrst, 'reload schema';
