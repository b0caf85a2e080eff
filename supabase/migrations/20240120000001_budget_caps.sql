-- The operator's daily OpenAI caps, in tokens or in US dollars, make jobs wait, never fail.
--
-- OPENAI_DAILY_TOKEN_CAP was checked by `mealworker_budget_take`, and a job meeting it failed
-- (a retryable failure: an attempt spent, a retry with backoff, in a few days failed for good).
-- Now the take answers when the cap opens again (`retry_at`, the next UTC midnight by the
-- database's clock) and the worker defers the job to then (`mealworker_defer_job`), the meal
-- plan saying why (`mealworker_meal_plan_waiting`).
--
-- OPENAI_DAILY_USD_CAP caps what a budget key spends per UTC day, priced by the worker from the
-- model's price table. `openai_spend` keeps it per key and day: `usd_spent`, what the answers
-- cost by their usage (`mealworker_budget_spent`, after each answer), and `usd_reserved`, the
-- worst case of the calls sent and not yet answered (the prompt's estimate at the input price
-- plus the reserved completion at the output price). A call goes only when its worst case fits
-- in what is left after both, so concurrent workers cannot overshoot the cap between them.
--
-- `openai_budgets` also keeps, per key and model and UTC day, the tokens the answers used
-- (input, cached, output) and what they cost, the cap last applied, and until when a cap holds
-- calls back, for `stats`, `doctor` and `/metrics`.

alter table public.openai_budgets
  add column if not exists tokens_input bigint not null default 0,
  add column if not exists tokens_cached bigint not null default 0,
  add column if not exists tokens_output bigint not null default 0,
  add column if not exists cost_usd numeric not null default 0,
  add column if not exists daily_tokens_cap bigint,
  add column if not exists capped_until timestamptz,
  add column if not exists capped_by text;

create table if not exists public.openai_spend (
  budget_key text not null,
  day date not null,
  usd_spent numeric not null default 0 check (usd_spent >= 0),
  usd_reserved numeric not null default 0 check (usd_reserved >= 0),
  daily_usd_cap numeric,
  updated_at timestamptz not null default now(),
  primary key (budget_key, day)
);

comment on table public.openai_spend is
  'What each OpenAI budget key spent per UTC day in US dollars, and the worst case of the '
  'calls in flight (mealworker).';

alter table public.openai_spend enable row level security;
revoke all on table public.openai_spend from public, anon, authenticated;
grant all on table public.openai_spend to service_role;

drop function if exists public.mealworker_budget_take(
  text, text, bigint, int, bigint, bigint, double precision, bigint);

-- Reserve one call's charge (see 20240118000000_openai_budget.sql), now also against the
-- daily USD cap: p_usd is the call's worst-case cost, p_daily_usd_cap the key's cap per UTC
-- day. reason 'daily_cap' (tokens) or 'daily_usd_cap': nothing more today, retry_at is the next
-- UTC midnight. tokens_charged_today, usd_spent_today and usd_reserved_today (the worst case
-- of the calls under way) are the key's counts with this call.
create or replace function public.mealworker_budget_take(
  p_key text,
  p_model text,
  p_tokens bigint,
  p_requests int default 1,
  p_tokens_cap bigint default null,
  p_requests_cap bigint default null,
  p_share double precision default 1.0,
  p_daily_tokens_cap bigint default null,
  p_usd double precision default null,
  p_daily_usd_cap double precision default null
)
returns table (
  wait_ms int, reserved boolean, tokens_limit bigint, requests_limit bigint, reason text,
  retry_at timestamptz, tokens_charged_today bigint, usd_spent_today double precision,
  usd_reserved_today double precision
)
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_today date := (pg_catalog.clock_timestamp() at time zone 'utc')::date;
  v_midnight timestamptz;
  v_window interval := interval '60 seconds';
  b public.openai_budgets;
  s public.openai_spend;
  v_tokens bigint;
  v_requests bigint;
  v_tokens_tat timestamptz;
  v_requests_tat timestamptz;
  v_ready timestamptz := v_now;
  v_charged_today bigint;
  v_capped_by text;
begin
  v_midnight := (v_today + 1)::timestamp at time zone 'utc';
  if p_tokens is null or p_tokens < 0 or p_requests is null or p_requests < 0 then
    raise exception 'mealworker_budget_take: a charge is a non-negative number of tokens and '
                    'requests (got % and %)', p_tokens, p_requests
      using errcode = '22023';
  end if;
  if p_share is null or p_share <= 0 or p_share > 1 then
    raise exception 'mealworker_budget_take: the share must be in (0, 1] (got %)', p_share
      using errcode = '22023';
  end if;
  if p_usd < 0 or (p_daily_usd_cap is not null and p_usd is null) then
    raise exception 'mealworker_budget_take: a USD cap needs the call''s worst-case cost, a '
                    'non-negative amount (got %)', p_usd
      using errcode = '22023';
  end if;
  insert into public.openai_budgets as o (budget_key, model)
  values (p_key, p_model)
  on conflict (budget_key, model) do nothing;
  select * into b
    from public.openai_budgets o
   where o.budget_key = p_key and o.model = p_model
     for update;
  -- The key's spend today, locked after the model's row (every function takes them in this
  -- order), and only when dollars are counted.
  if p_usd is not null then
    insert into public.openai_spend as x (budget_key, day)
    values (p_key, v_today)
    on conflict (budget_key, day) do nothing;
    select * into s
      from public.openai_spend x
     where x.budget_key = p_key and x.day = v_today
       for update;
  else
    select * into s
      from public.openai_spend x
     where x.budget_key = p_key and x.day = v_today;
  end if;
  v_charged_today := case when b.day = v_today then b.tokens_charged else 0 end;

  if b.blocked_until > v_now then
    return query select
      pg_catalog.ceil(extract(epoch from b.blocked_until - v_now) * 1000)::int, false,
      b.tokens_limit, b.requests_limit, 'rate_limited'::text, b.blocked_until, v_charged_today,
      s.usd_spent::double precision, s.usd_reserved::double precision;
    return;
  end if;

  -- The operator's daily caps: nothing more until the next UTC day.
  if p_daily_tokens_cap is not null and v_charged_today + p_tokens > p_daily_tokens_cap then
    v_capped_by := 'tokens';
  elsif p_daily_usd_cap is not null
        and coalesce(s.usd_spent, 0) + coalesce(s.usd_reserved, 0) + p_usd > p_daily_usd_cap then
    v_capped_by := 'usd';
  end if;
  if v_capped_by is not null then
    update public.openai_budgets o
       set capped_until = v_midnight,
           capped_by = v_capped_by,
           daily_tokens_cap = p_daily_tokens_cap,
           updated_at = v_now
     where o.budget_key = p_key and o.model = p_model;
    if p_usd is not null then
      update public.openai_spend x
         set daily_usd_cap = p_daily_usd_cap, updated_at = v_now
       where x.budget_key = p_key and x.day = v_today;
    end if;
    return query select
      pg_catalog.ceil(extract(epoch from v_midnight - v_now) * 1000)::int,
      false, b.tokens_limit, b.requests_limit,
      case v_capped_by when 'tokens' then 'daily_cap' else 'daily_usd_cap' end,
      v_midnight, v_charged_today, s.usd_spent::double precision,
      s.usd_reserved::double precision;
    return;
  end if;

  -- least() ignores nulls: the learned limit, the operator's cap, or the smaller of the two.
  v_tokens := pg_catalog.floor(least(b.tokens_limit, p_tokens_cap) * p_share)::bigint;
  v_requests := pg_catalog.floor(least(b.requests_limit, p_requests_cap) * p_share)::bigint;

  if v_tokens is null and v_requests is null and not b.no_limit_headers then
    -- Nothing known yet: one call goes and its answer's headers teach the limit.
    if b.probe_until is not null and b.probe_until > v_now then
      return query select 200, false, b.tokens_limit, b.requests_limit, 'probing'::text,
        v_now + interval '200 milliseconds', v_charged_today, s.usd_spent::double precision,
        s.usd_reserved::double precision;
      return;
    end if;
    update public.openai_budgets o set probe_until = v_now + interval '30 seconds'
     where o.budget_key = p_key and o.model = p_model;
  end if;

  v_tokens_tat := greatest(b.tokens_tat, v_now);
  v_requests_tat := greatest(b.requests_tat, v_now);
  if v_tokens is not null and v_tokens > 0 then
    v_tokens_tat := v_tokens_tat + v_window * (p_tokens::double precision / v_tokens);
    v_ready := greatest(v_ready, v_tokens_tat - v_window);
  end if;
  if v_requests is not null and v_requests > 0 then
    v_requests_tat := v_requests_tat + v_window * (p_requests::double precision / v_requests);
    v_ready := greatest(v_ready, v_requests_tat - v_window);
  end if;

  update public.openai_budgets o
     set tokens_tat = v_tokens_tat,
         requests_tat = v_requests_tat,
         day = v_today,
         tokens_charged = v_charged_today + p_tokens,
         requests_charged = case when o.day = v_today then o.requests_charged else 0 end
                            + p_requests,
         refused = case when o.day = v_today then o.refused else 0 end,
         waited_ms = case when o.day = v_today then o.waited_ms else 0 end,
         tokens_input = case when o.day = v_today then o.tokens_input else 0 end,
         tokens_cached = case when o.day = v_today then o.tokens_cached else 0 end,
         tokens_output = case when o.day = v_today then o.tokens_output else 0 end,
         cost_usd = case when o.day = v_today then o.cost_usd else 0 end,
         daily_tokens_cap = p_daily_tokens_cap,
         capped_until = null,
         capped_by = null,
         updated_at = v_now
   where o.budget_key = p_key and o.model = p_model;
  if p_usd is not null then
    update public.openai_spend x
       set usd_reserved = x.usd_reserved + p_usd,
           daily_usd_cap = p_daily_usd_cap,
           updated_at = v_now
     where x.budget_key = p_key and x.day = v_today;
  end if;

  return query select
    pg_catalog.ceil(extract(epoch from v_ready - v_now) * 1000)::int, true,
    b.tokens_limit, b.requests_limit, null::text, v_ready, v_charged_today + p_tokens,
    s.usd_spent::double precision, (s.usd_reserved + p_usd)::double precision;
end
$$;

drop function if exists public.mealworker_budget_refund(
  text, text, bigint, int, bigint, bigint, double precision);

-- Give back a reservation that was never sent (the job was cancelled while it waited), its
-- worst-case cost (p_usd) included.
create or replace function public.mealworker_budget_refund(
  p_key text,
  p_model text,
  p_tokens bigint,
  p_requests int default 1,
  p_tokens_cap bigint default null,
  p_requests_cap bigint default null,
  p_share double precision default 1.0,
  p_usd double precision default null
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_today date := (pg_catalog.clock_timestamp() at time zone 'utc')::date;
begin
  update public.openai_budgets o
     set tokens_tat = greatest(v_now, o.tokens_tat - interval '60 seconds'
           * coalesce(p_tokens::double precision
                      / nullif(pg_catalog.floor(least(o.tokens_limit, p_tokens_cap) * p_share), 0),
                      0)),
         requests_tat = greatest(v_now, o.requests_tat - interval '60 seconds'
           * coalesce(p_requests::double precision
                      / nullif(pg_catalog.floor(least(o.requests_limit, p_requests_cap)
                                                * p_share), 0),
                      0)),
         tokens_charged = greatest(o.tokens_charged - p_tokens, 0),
         requests_charged = greatest(o.requests_charged - p_requests, 0),
         probe_until = null,
         updated_at = v_now
   where o.budget_key = p_key and o.model = p_model;
  if p_usd is not null then
    update public.openai_spend x
       set usd_reserved = greatest(x.usd_reserved - greatest(p_usd, 0), 0),
           updated_at = v_now
     where x.budget_key = p_key and x.day = v_today;
  end if;
end
$$;

-- An answer came back (or a call ended without one): its worst case p_reserved_usd leaves the
-- reservations, what it cost by its usage (p_cost_usd) is spent, and its tokens are counted.
-- Returns what the key has spent today, in US dollars (null when dollars are not counted).
create or replace function public.mealworker_budget_spent(
  p_key text,
  p_model text,
  p_reserved_usd double precision default null,
  p_cost_usd double precision default null,
  p_input_tokens bigint default 0,
  p_cached_tokens bigint default 0,
  p_output_tokens bigint default 0
)
returns double precision
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_today date := (pg_catalog.clock_timestamp() at time zone 'utc')::date;
  v_spent numeric;
begin
  update public.openai_budgets o
     set day = v_today,
         tokens_charged = case when o.day = v_today then o.tokens_charged else 0 end,
         requests_charged = case when o.day = v_today then o.requests_charged else 0 end,
         refused = case when o.day = v_today then o.refused else 0 end,
         waited_ms = case when o.day = v_today then o.waited_ms else 0 end,
         tokens_input = case when o.day = v_today then o.tokens_input else 0 end
                        + greatest(coalesce(p_input_tokens, 0), 0),
         tokens_cached = case when o.day = v_today then o.tokens_cached else 0 end
                         + greatest(coalesce(p_cached_tokens, 0), 0),
         tokens_output = case when o.day = v_today then o.tokens_output else 0 end
                         + greatest(coalesce(p_output_tokens, 0), 0),
         cost_usd = case when o.day = v_today then o.cost_usd else 0 end
                    + greatest(coalesce(p_cost_usd, 0), 0),
         updated_at = v_now
   where o.budget_key = p_key and o.model = p_model;
  if p_reserved_usd is null and p_cost_usd is null then
    return null;
  end if;
  insert into public.openai_spend as x (budget_key, day)
  values (p_key, v_today)
  on conflict (budget_key, day) do nothing;
  update public.openai_spend x
     set usd_reserved = greatest(x.usd_reserved - greatest(coalesce(p_reserved_usd, 0), 0), 0),
         usd_spent = x.usd_spent + greatest(coalesce(p_cost_usd, 0), 0),
         updated_at = v_now
   where x.budget_key = p_key and x.day = v_today
  returning x.usd_spent into v_spent;
  return v_spent::double precision;
end
$$;

drop function if exists public.mealworker_budget_stats();

-- Every budget as operators see it: limits learned, today's counts (zero when the row was last
-- used on an earlier day), how full the bucket is, the caps and whether one holds calls back.
create or replace function public.mealworker_budget_stats()
returns table (
  budget_key text,
  model text,
  tokens_limit bigint,
  requests_limit bigint,
  limits_learned_at timestamptz,
  tokens_charged bigint,
  requests_charged bigint,
  refused bigint,
  waited_ms bigint,
  day date,
  tokens_free_share double precision,
  blocked_until timestamptz,
  tokens_input bigint,
  tokens_cached bigint,
  tokens_output bigint,
  cost_usd double precision,
  daily_tokens_cap bigint,
  capped_until timestamptz,
  capped_by text,
  key_usd_spent double precision,
  key_usd_reserved double precision,
  daily_usd_cap double precision
)
language sql
stable
set search_path = ''
as $$
  with today as (select (now() at time zone 'utc')::date as day)
  select o.budget_key, o.model, o.tokens_limit, o.requests_limit, o.limits_learned_at,
         case when o.day = t.day then o.tokens_charged else 0 end,
         case when o.day = t.day then o.requests_charged else 0 end,
         case when o.day = t.day then o.refused else 0 end,
         case when o.day = t.day then o.waited_ms else 0 end,
         o.day,
         least(1.0, greatest(0.0,
           extract(epoch from (now() + interval '60 seconds' - greatest(o.tokens_tat, now())))
           / 60.0))::double precision,
         case when o.blocked_until > now() then o.blocked_until end,
         case when o.day = t.day then o.tokens_input else 0 end,
         case when o.day = t.day then o.tokens_cached else 0 end,
         case when o.day = t.day then o.tokens_output else 0 end,
         (case when o.day = t.day then o.cost_usd else 0 end)::double precision,
         o.daily_tokens_cap,
         case when o.capped_until > now() then o.capped_until end,
         case when o.capped_until > now() then o.capped_by end,
         x.usd_spent::double precision,
         x.usd_reserved::double precision,
         x.daily_usd_cap::double precision
    from public.openai_budgets o
   cross join today t
    left join public.openai_spend x on x.budget_key = o.budget_key and x.day = t.day
   order by o.budget_key, o.model;
$$;

-- The meal plan of a job this worker holds waits (its job is about to be deferred): pending,
-- and why, until when, in words for the app's user, in its progress. False when the lease is
-- not held or an operator is cancelling the job.
create or replace function public.mealworker_meal_plan_waiting(
  p_job_id bigint,
  p_lease_token uuid,
  p_waiting text,
  p_until timestamptz,
  p_message text default null
)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_meal_plan_id uuid;
begin
  select j.meal_plan_id into v_meal_plan_id
    from public.background_jobs j
   where j.id = p_job_id
     and j.lease_token = p_lease_token  -- implies status = 'processing' (check constraint)
     and not j.cancel_requested
     for share;
  if not found then
    return false;
  end if;
  update public.meal_plans mp
     set status = 'pending',
         progress = jsonb_strip_nulls(jsonb_build_object(
           'stage', 'waiting', 'waiting', p_waiting, 'until', p_until, 'message', p_message)),
         updated_at = now()
   where mp.id = v_meal_plan_id
     and mp.status in ('pending', 'generating');  -- never revive a cancelled plan
  return true;
end
$$;

-- A waiting plan that runs again (or ends) no longer says it waits.
create or replace function public.mealworker_meal_plan_waiting_clear()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.progress := '{}'::jsonb;
  return new;
end
$$;

create or replace trigger meal_plans_waiting_clear
  before update on public.meal_plans
  for each row
  when (new.status <> 'pending' and new.progress ->> 'stage' = 'waiting')
  execute function public.mealworker_meal_plan_waiting_clear();

revoke all on function public.mealworker_budget_take(text, text, bigint, int, bigint, bigint,
  double precision, bigint, double precision, double precision) from public, anon, authenticated;
grant execute on function public.mealworker_budget_take(text, text, bigint, int, bigint, bigint,
  double precision, bigint, double precision, double precision) to service_role;
revoke all on function public.mealworker_budget_refund(text, text, bigint, int, bigint, bigint,
  double precision, double precision) from public, anon, authenticated;
grant execute on function public.mealworker_budget_refund(text, text, bigint, int, bigint, bigint,
  double precision, double precision) to service_role;
revoke all on function public.mealworker_budget_spent(text, text, double precision,
  double precision, bigint, bigint, bigint) from public, anon, authenticated;
grant execute on function public.mealworker_budget_spent(text, text, double precision,
  double precision, bigint, bigint, bigint) to service_role;
revoke all on function public.mealworker_budget_stats() from public, anon, authenticated;
grant execute on function public.mealworker_budget_stats() to service_role;
revoke all on function public.mealworker_meal_plan_waiting(bigint, uuid, text, timestamptz, text)
  from public, anon, authenticated;
grant execute on function public.mealworker_meal_plan_waiting(bigint, uuid, text, timestamptz,
  text) to service_role;
revoke all on function public.mealworker_meal_plan_waiting_clear()
  from public, anon, authenticated;
grant execute on function public.mealworker_meal_plan_waiting_clear() to service_role;

notify pgrst, 'reload schema';
