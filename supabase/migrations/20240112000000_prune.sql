-- mealworker: pruning finished jobs and old events, for `mealworker prune`.
--
-- Nothing ever left `background_jobs` or `background_job_events`: every job stayed (three or
-- more event rows with it) for as long as the database lived. The claim does not mind (its
-- index holds pending jobs only), but the table, its other indexes, `stats` (which counts
-- every job by type and status), backups and vacuum all grow with it.
--
-- `mealworker_prune` deletes, in one short transaction per call and at most `p_limit` rows of
-- each table, jobs whose status is among `p_statuses` (completed and cancelled by default;
-- failed only when asked, since an operator may still requeue them) and that finished before
-- `p_finished_before`; and events created before `p_events_before`, except those of a job
-- still pending or processing. A job with no `finished_at` (rows from before mealworker, for
-- instance) is never pruned: when it finished is not known. Meal plans are the app's and are
-- never touched: a pruned job's meal plan keeps its plan, status and history columns.
-- `p_dry_run` counts what would go (all of it, not one batch) and deletes nothing.

create or replace function public.mealworker_prune(
  p_finished_before timestamptz,
  p_statuses text[] default array['completed', 'cancelled'],
  p_events_before timestamptz default null,
  p_limit int default 5000,
  p_dry_run boolean default false
)
returns table (jobs bigint, events bigint)
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_jobs bigint := 0;
  v_events bigint := 0;
begin
  if p_statuses is null or pg_catalog.cardinality(p_statuses) = 0
     or not (p_statuses <@ array['completed', 'cancelled', 'failed']) then
    raise exception 'mealworker_prune: the statuses to prune must be among completed, '
                    'cancelled and failed (got %)', p_statuses
      using errcode = '22023';
  end if;
  if p_limit is null or p_limit < 1 then
    raise exception 'mealworker_prune: the batch limit must be at least 1 (got %)', p_limit
      using errcode = '22023';
  end if;

  if coalesce(p_dry_run, false) then
    select pg_catalog.count(*) into v_jobs
      from public.background_jobs j
     where j.status = any(p_statuses)
       and j.finished_at < p_finished_before;
    select pg_catalog.count(*) into v_events
      from public.background_job_events e
     where e.created_at < p_events_before
       and not exists (select 1
                         from public.background_jobs j
                        where j.id = e.job_id and j.status in ('pending', 'processing'));
    return query select v_jobs, v_events;
    return;
  end if;

  if p_finished_before is not null then
    delete from public.background_jobs j
     where j.id = any(array(
             select c.id
               from public.background_jobs c
              where c.status = any(p_statuses)
                and c.finished_at < p_finished_before
              limit p_limit
                for update skip locked))
       and j.status = any(p_statuses);
    get diagnostics v_jobs = row_count;
  end if;

  if p_events_before is not null then
    delete from public.background_job_events e
     where e.id = any(array(
             select x.id
               from public.background_job_events x
              where x.created_at < p_events_before
                and not exists (select 1
                                  from public.background_jobs j
                                 where j.id = x.job_id
                                   and j.status in ('pending', 'processing'))
              order by x.created_at
              limit p_limit));
    get diagnostics v_events = row_count;
  end if;

  return query select v_jobs, v_events;
end
$$;

revoke all on function public.mealworker_prune(timestamptz, text[], timestamptz, int, boolean)
  from public, anon, authenticated;
grant execute on function public.mealworker_prune(timestamptz, text[], timestamptz, int, boolean)
  to service_role;
