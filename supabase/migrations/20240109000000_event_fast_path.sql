-- mealworker: the claim's and the completion's events without a look at the old rows.
--
-- Every update of `background_jobs` writes its events from a statement-level trigger that joins
-- the statement's old rows to its new ones, to tell what changed, and builds each event's detail
-- from both. For the two statements that run once per job (the claim and the completion) the
-- answer is known before the statement runs: a claim takes rows it has just locked as pending
-- to processing, a completion takes rows whose lease token matched (so processing) to completed.
-- That join and the per-row detail were a fifth of the database's CPU per job (66 -> 53 us per
-- claimed and completed job, serial `mealworker_claim_next` in batches of 500).
--
-- So `mealworker_claim_jobs` and `mealworker_complete_jobs` announce their transition in the
-- transaction-local setting `mealworker.transition` ("<event>/<from>/<to>/<statement time>"),
-- and the trigger writes exactly the events it would have written (same event, worker, attempt,
-- detail, order) from the new rows alone. It takes this path only for the statement that
-- announced it (same statement time), never for a nested statement (trigger depth 1), and never
-- when a caller set `mealworker.event`, `.worker` or `.detail`; it always clears the setting.
-- Anything else takes the full path, as before. Neither statement makes a job runnable, so
-- neither sends a wake-up. Functions keep their names, parameters and results; grants are kept
-- by `create or replace`.

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
  v_known text[] := pg_catalog.string_to_array(
    nullif(pg_catalog.current_setting('mealworker.transition', true), ''), '/');
begin
  if v_known is not null then
    perform pg_catalog.set_config('mealworker.transition', '', true);
    -- The one statement that announced its transition, nothing nested, no caller's setting:
    -- every row made that transition, so its event needs no look at the old rows.
    if v_known[4] = pg_catalog.statement_timestamp()::text
       and pg_catalog.pg_trigger_depth() = 1
       and v_event is null and v_worker is null and v_detail is null then
      insert into public.background_job_events
        (job_id, event, job_type, worker_id, attempt, detail)
      select n.id, v_known[1], n.job_type, n.locked_by, n.attempts,
             pg_catalog.jsonb_build_object('from', v_known[2], 'to', v_known[3])
        from new_rows n
       order by n.id;
      return null;
    end if;
  end if;

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
                 from public.background_jobs c
                where c.status = 'pending'
                  and c.run_at <= now()
                  and c.job_type = any(p_job_types)
                order by c.priority desc, c.run_at, c.id
                limit greatest(p_limit, 0)
                  for update skip locked))
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
begin
  perform pg_catalog.set_config(
    'mealworker.transition',
    'completed/processing/completed/' || pg_catalog.statement_timestamp()::text,
    true);
  return query
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
end
$$;

notify pgrst, 'reload schema';
