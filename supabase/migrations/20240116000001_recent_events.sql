-- mealworker: `tail` starts with the last events, as `tail` does.
--
-- Without `--since`, `tail --no-follow` printed nothing and `tail` showed only what happened
-- after it started. `mealworker_recent_events` returns the last `p_limit` events, oldest first,
-- of one job, one job type and some events when asked (the filters apply before the limit,
-- so "the last 20 failures" are 20 failures). It reads through the primary key backwards.

create or replace function public.mealworker_recent_events(
  p_limit int default 20,
  p_job_id bigint default null,
  p_job_type text default null,
  p_events text[] default null
)
returns setof public.background_job_events
language sql
stable
set search_path = ''
as $$
  select r.*
    from (select e.*
            from public.background_job_events e
           where (p_job_id is null or e.job_id = p_job_id)
             and (p_job_type is null or e.job_type = p_job_type)
             and (p_events is null or e.event = any(p_events))
           order by e.id desc
           limit greatest(coalesce(p_limit, 20), 0)) r
   order by r.id;
$$;

revoke all on function public.mealworker_recent_events(int, bigint, text, text[])
  from public, anon, authenticated;
grant execute on function public.mealworker_recent_events(int, bigint, text, text[])
  to service_role;
