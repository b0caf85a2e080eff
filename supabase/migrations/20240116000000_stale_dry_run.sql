-- mealworker: `requeue --stale --dry-run` changes nothing.
--
-- `mealworker_requeue_stale` has no dry run, so the CLI's `--dry-run` was accepted and ignored:
-- the jobs whose lease had expired were requeued (or failed) all the same.
-- `mealworker_stale_jobs` is its dry run: the same jobs, up to the same limit, each with the
-- status `mealworker_requeue_stale` would give it, ordered by id as it lists them; it writes
-- and locks nothing. A separate function rather than a `p_dry_run` parameter: the original
-- worker's file (20240101000000) may be applied again, and would then add a second
-- `mealworker_requeue_stale` beside a changed one, making every call to it ambiguous.

create or replace function public.mealworker_stale_jobs(p_limit int default 1000)
returns table (job_id bigint, status text)
language sql
stable
set search_path = ''
as $$
  select x.id, x.status
    from (select s.id,
                 case when s.cancel_requested then 'cancelled'
                      when s.attempts >= s.max_attempts then 'failed'
                      else 'pending' end as status
            from public.background_jobs s
           where s.status = 'processing'
             and s.lease_expires_at < now()
           order by s.lease_expires_at, s.id
           limit greatest(p_limit, 0)) x
   order by x.id;
$$;

revoke all on function public.mealworker_stale_jobs(int) from public, anon, authenticated;
grant execute on function public.mealworker_stale_jobs(int) to service_role;
