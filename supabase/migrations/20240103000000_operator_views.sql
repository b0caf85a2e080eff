-- What operators ask at 3 a.m.: how far behind is the queue, what is failing and why, which
-- workers are alive, what did OpenAI cost. `mealworker stats` and `tail` read these.

-- Replaces the first migration's summary with the full picture (same signature).
create or replace function public.mealworker_queue_stats()
returns jsonb
language sql
stable
set search_path = ''
as $$
  with jobs as (
    select j.status, j.job_type, count(*) as n
      from public.background_jobs j
     group by rollup (j.status, j.job_type)
  ), recent as (
    select e.event, e.created_at, e.detail
      from public.background_job_events e
     where e.created_at > now() - interval '24 hours'
       and e.event in ('completed', 'failed', 'retry_scheduled')
  ), durations as (
    select extract(epoch from (j.finished_at - j.started_at)) as seconds
      from public.background_jobs j
     where j.status = 'completed' and j.finished_at > now() - interval '24 hours'
       and j.started_at is not null
  ), errors as (
    select coalesce(e.detail ->> 'last_error', '(no message)') as message,
           count(*) as n,
           max(e.created_at) as last_at
      from recent e
     where e.event in ('failed', 'retry_scheduled')
     group by 1
     order by n desc, last_at desc
     limit 10
  ), plans as (
    select count(*) as n,
           coalesce(sum((mp.usage ->> 'input_tokens')::bigint), 0) as input_tokens,
           coalesce(sum((mp.usage ->> 'output_tokens')::bigint), 0) as output_tokens,
           coalesce(sum((mp.usage ->> 'cost_usd')::numeric), 0) as cost_usd
      from public.meal_plans mp
     where mp.status = 'completed' and mp.completed_at > now() - interval '24 hours'
  )
  select jsonb_build_object(
    'by_status', (
      select jsonb_object_agg(s.status, coalesce(j.n, 0))
        from unnest(array['pending', 'processing', 'completed', 'failed', 'cancelled']) s (status)
        left join jobs j on j.status = s.status and j.job_type is null
    ),
    'by_type', coalesce((
      select jsonb_object_agg(t.job_type, t.counts)
        from (select j.job_type, jsonb_object_agg(j.status, j.n) as counts
                from jobs j
               where j.status is not null and j.job_type is not null
               group by j.job_type) t
    ), '{}'::jsonb),
    'oldest_pending_seconds', (
      select extract(epoch from now() - min(j.run_at))
        from public.background_jobs j
       where j.status = 'pending' and j.run_at <= now()
    ),
    'completed', jsonb_build_object(
      '5m', (select count(*) from recent where event = 'completed'
              and created_at > now() - interval '5 minutes'),
      '1h', (select count(*) from recent where event = 'completed'
              and created_at > now() - interval '1 hour'),
      '24h', (select count(*) from recent where event = 'completed')
    ),
    'failed', jsonb_build_object(
      '1h', (select count(*) from recent where event = 'failed'
              and created_at > now() - interval '1 hour'),
      '24h', (select count(*) from recent where event = 'failed')
    ),
    'retried', jsonb_build_object(
      '1h', (select count(*) from recent where event = 'retry_scheduled'
              and created_at > now() - interval '1 hour'),
      '24h', (select count(*) from recent where event = 'retry_scheduled')
    ),
    'processing_seconds', (
      select jsonb_build_object(
        'p50', percentile_cont(0.5) within group (order by seconds),
        'p95', percentile_cont(0.95) within group (order by seconds),
        'max', max(seconds))
        from durations
    ),
    'recent_errors', coalesce((
      select jsonb_agg(jsonb_build_object('message', e.message, 'count', e.n, 'last_at', e.last_at))
        from errors e
    ), '[]'::jsonb),
    'workers', coalesce((
      select jsonb_agg(jsonb_build_object(
               'id', w.id, 'host', w.host, 'pid', w.pid, 'version', w.version,
               'status', w.status, 'started_at', w.started_at, 'last_seen_at', w.last_seen_at,
               'seconds_since_seen', extract(epoch from now() - w.last_seen_at),
               'active_jobs', w.active_jobs, 'max_jobs', w.max_jobs, 'rss_bytes', w.rss_bytes)
             order by w.last_seen_at desc)
        from public.workers w
       where w.last_seen_at > now() - interval '24 hours'
    ), '[]'::jsonb),
    'openai_24h', (
      select jsonb_build_object(
        'plans', p.n, 'input_tokens', p.input_tokens, 'output_tokens', p.output_tokens,
        'cost_usd', p.cost_usd,
        'cost_per_plan_usd', case when p.n > 0 then round(p.cost_usd / p.n, 6) end)
        from plans p
    )
  )
$$;

-- Events from a point in time (`tail --since 10m`), oldest first.
create or replace function public.mealworker_events_from(
  p_since timestamptz,
  p_limit int default 500
)
returns setof public.background_job_events
language sql
stable
set search_path = ''
as $$
  select e.*
    from public.background_job_events e
   where e.created_at >= p_since
   order by e.id
   limit p_limit
$$;

revoke all on function public.mealworker_queue_stats() from public, anon, authenticated;
grant execute on function public.mealworker_queue_stats() to service_role;
revoke all on function public.mealworker_events_from(timestamptz, int)
  from public, anon, authenticated;
grant execute on function public.mealworker_events_from(timestamptz, int) to service_role;

notify pgrst, 'reload schema';
