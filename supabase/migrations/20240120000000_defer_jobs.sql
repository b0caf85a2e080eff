-- A job can wait without failing: its handler defers it to a later time, with a reason.
--
-- Some jobs cannot go on now for a reason that is no fault of theirs and passes by itself: a
-- daily spending cap is reached, a partner's API is closed for the night. Failing them spent an
-- attempt and scheduled a retry with backoff, which fails them for good after a few days, and
-- showed a failure where there is none. `mealworker_defer_job` puts a claimed job back to
-- `pending` until `p_run_at` with the claim's attempt given back (a claim counts one; a deferral
-- must not), and keeps the reason on the job (`wait_reason`) for `stats` and apps; a `deferred`
-- event records it. The reason is cleared when the job next leaves `pending` (claimed,
-- cancelled) or is made runnable earlier (`requeue`), by the trigger below, so that no claim
-- function needs to know of it.
--
-- `mealworker_job_note` lets a handler add an event of its own to its job's history (a wait, a
-- fallback), fenced by its lease like every write about a running job.

alter table public.background_jobs add column if not exists wait_reason text;

comment on column public.background_jobs.wait_reason is
  'Why a pending job waits until run_at (mealworker_defer_job); null once it runs again.';

create index if not exists background_jobs_waiting_idx
  on public.background_jobs (run_at)
  where wait_reason is not null;

create or replace function public.mealworker_jobs_wait_reason_clear()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.wait_reason := null;
  return new;
end
$$;

create or replace trigger background_jobs_wait_reason_clear
  before update on public.background_jobs
  for each row
  when (new.wait_reason is not null
        and (new.status <> 'pending' or new.run_at < old.run_at))
  execute function public.mealworker_jobs_wait_reason_clear();

-- Put a job this worker holds back to pending until p_run_at, without counting the attempt.
-- Returns 'pending'; 'cancel_requested' when an operator asked to cancel it (nothing is changed:
-- the worker records the cancel as it does for any stopped job); null when the lease is not
-- held (another worker has the job, or it expired).
create or replace function public.mealworker_defer_job(
  p_job_id bigint,
  p_lease_token uuid,
  p_run_at timestamptz,
  p_reason text
)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_cancel boolean;
  v_run_at timestamptz := coalesce(p_run_at, now());
begin
  if p_reason is null or pg_catalog.btrim(p_reason) = '' then
    raise exception 'mealworker_defer_job: a deferred job needs a reason' using errcode = '22023';
  end if;
  select j.cancel_requested into v_cancel
    from public.background_jobs j
   where j.id = p_job_id
     and j.lease_token = p_lease_token  -- implies status = 'processing' (check constraint)
     for update;

  if not found then
    insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
    select j.id, 'lease_lost', j.job_type, null, j.attempts,
           jsonb_build_object('call', 'defer', 'status', j.status, 'locked_by', j.locked_by)
      from public.background_jobs j
     where j.id = p_job_id;
    return null;
  end if;
  if v_cancel then
    return 'cancel_requested';
  end if;

  perform pg_catalog.set_config('mealworker.event', 'deferred', true),
          pg_catalog.set_config(
            'mealworker.detail',
            jsonb_build_object('run_at', v_run_at, 'reason', p_reason)::text,
            true);
  update public.background_jobs j
     set status = 'pending',
         run_at = v_run_at,
         attempts = greatest(j.attempts - 1, 0),
         wait_reason = p_reason,
         locked_by = null,
         lease_token = null,
         lease_expires_at = null,
         updated_at = now()
   where j.id = p_job_id;
  return 'pending';
end
$$;

-- The jobs waiting for a later time with a reason, grouped by type and reason: how many, and
-- from when until when they run again (for stats).
create or replace function public.mealworker_waiting_jobs()
returns table (
  job_type text, wait_reason text, jobs bigint, first_run_at timestamptz,
  last_run_at timestamptz
)
language sql
stable
set search_path = ''
as $$
  select j.job_type, j.wait_reason, count(*), min(j.run_at), max(j.run_at)
    from public.background_jobs j
   where j.wait_reason is not null
     and j.status = 'pending'
     and j.run_at > now()
   group by j.job_type, j.wait_reason
   order by min(j.run_at), j.job_type, j.wait_reason;
$$;

-- An event of the handler's own in its job's history (e.g. a long wait), while it holds the
-- lease; false (and nothing written) when it does not.
create or replace function public.mealworker_job_note(
  p_job_id bigint,
  p_lease_token uuid,
  p_event text,
  p_detail jsonb default null
)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
  if p_event is null or p_event !~ '^[a-z][a-z0-9_]{0,40}$' then
    raise exception 'mealworker_job_note: an event is a lower-case name (got %)', p_event
      using errcode = '22023';
  end if;
  insert into public.background_job_events (job_id, event, job_type, worker_id, attempt, detail)
  select j.id, p_event, j.job_type, j.locked_by, j.attempts, p_detail
    from public.background_jobs j
   where j.id = p_job_id
     and j.lease_token = p_lease_token;
  return found;
end
$$;

revoke all on function public.mealworker_jobs_wait_reason_clear()
  from public, anon, authenticated;
grant execute on function public.mealworker_jobs_wait_reason_clear() to service_role;
revoke all on function public.mealworker_defer_job(bigint, uuid, timestamptz, text)
  from public, anon, authenticated;
grant execute on function public.mealworker_defer_job(bigint, uuid, timestamptz, text)
  to service_role;
revoke all on function public.mealworker_waiting_jobs() from public, anon, authenticated;
grant execute on function public.mealworker_waiting_jobs() to service_role;
revoke all on function public.mealworker_job_note(bigint, uuid, text, jsonb)
  from public, anon, authenticated;
grant execute on function public.mealworker_job_note(bigint, uuid, text, jsonb) to service_role;

notify pgrst, 'reload schema';
