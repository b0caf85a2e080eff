-- One OpenAI budget for the whole fleet: every worker on every machine takes each request's
-- charge from one row per (API key, model) before it sends the request.
--
-- OpenAI counts a request against the organisation's tokens-per-minute limit when it arrives:
-- the prompt's estimated tokens plus `max_completion_tokens`, whatever the answer uses. Each
-- worker meeting that limit alone, with its own 429 retries, wasted most of the fleet's calls
-- (1.44 refused calls per successful one at 3 workers x 4) and failed job attempts. Here the
-- budget is a GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per
-- dimension, tokens and requests): a bucket of a minute's limit that refills continuously, the
-- way OpenAI's does. `*_tat` is GCRA's "theoretical arrival time": at `now` the bucket holds
-- `(now + 60 s - greatest(tat, now)) / 60 s` of the limit, so `tat <= now` is a full bucket and
-- `tat = now + 60 s` an empty one; a charge of c tokens moves tat on by `c / limit` minutes.
--
-- `mealworker_budget_take` reserves a call's charge in one statement under the row's lock,
-- timed by the database's clock (so the fleet agrees), and answers how long to wait before
-- sending (0: send now). A reservation is a place in line: callers are served in the order they
-- asked, never by who polls at the right moment, and nobody asks twice. When no limit is known
-- yet (no answer read, no setting), one call at a time goes (a probe) until the first answer's
-- `x-ratelimit-limit-*` headers are learned (`mealworker_budget_learn`). A 429 that still
-- happens empties the bucket for every worker at once (`mealworker_budget_refused`).
--
-- The row also keeps the counts `stats` shows: tokens and requests charged, 429s, time spent
-- waiting (told by the workers), per UTC day.

create table if not exists public.openai_budgets (
  budget_key text not null,
  model text not null,
  tokens_limit bigint check (tokens_limit > 0),
  requests_limit bigint check (requests_limit > 0),
  no_limit_headers boolean not null default false,
  limits_learned_at timestamptz,
  probe_until timestamptz,
  tokens_tat timestamptz not null default now(),
  requests_tat timestamptz not null default now(),
  blocked_until timestamptz,
  day date not null default (now() at time zone 'utc')::date,
  tokens_charged bigint not null default 0,
  requests_charged bigint not null default 0,
  refused bigint not null default 0,
  waited_ms bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (budget_key, model)
);

comment on table public.openai_budgets is
  'The fleet''s shared OpenAI rate-limit budget per API key fingerprint and model (mealworker).';

alter table public.openai_budgets enable row level security;
revoke all on table public.openai_budgets from public, anon, authenticated;
grant all on table public.openai_budgets to service_role;

-- Reserve one call's charge. p_tokens: the prompt's estimate plus max_completion_tokens;
-- p_tokens_cap / p_requests_cap: the operator's limits (OPENAI_TPM_LIMIT / OPENAI_RPM_LIMIT),
-- used alone when no headers were learned and as a ceiling when they were; p_share: the part of
-- the limit this fleet may use (OPENAI_BUDGET_SHARE). Returns wait_ms (how long to wait before
-- sending) and reserved: true when the charge is taken (send after wait_ms, do not ask again),
-- false when the caller must ask again after wait_ms; reason says why not: 'probing' (a probe
-- is out), 'rate_limited' (a 429 blocks the key) or 'daily_cap' (p_daily_tokens_cap, the
-- operator's cap on tokens charged per UTC day, is reached: wait_ms runs to midnight UTC).
create or replace function public.mealworker_budget_take(
  p_key text,
  p_model text,
  p_tokens bigint,
  p_requests int default 1,
  p_tokens_cap bigint default null,
  p_requests_cap bigint default null,
  p_share double precision default 1.0,
  p_daily_tokens_cap bigint default null
)
returns table (
  wait_ms int, reserved boolean, tokens_limit bigint, requests_limit bigint, reason text
)
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_today date := (pg_catalog.clock_timestamp() at time zone 'utc')::date;
  v_window interval := interval '60 seconds';
  b public.openai_budgets;
  v_tokens bigint;
  v_requests bigint;
  v_tokens_tat timestamptz;
  v_requests_tat timestamptz;
  v_ready timestamptz := v_now;
  v_charged_today bigint;
begin
  if p_tokens is null or p_tokens < 0 or p_requests is null or p_requests < 0 then
    raise exception 'mealworker_budget_take: a charge is a non-negative number of tokens and '
                    'requests (got % and %)', p_tokens, p_requests
      using errcode = '22023';
  end if;
  if p_share is null or p_share <= 0 or p_share > 1 then
    raise exception 'mealworker_budget_take: the share must be in (0, 1] (got %)', p_share
      using errcode = '22023';
  end if;
  insert into public.openai_budgets as o (budget_key, model)
  values (p_key, p_model)
  on conflict (budget_key, model) do nothing;
  select * into b
    from public.openai_budgets o
   where o.budget_key = p_key and o.model = p_model
     for update;

  if b.blocked_until > v_now then
    return query select
      pg_catalog.ceil(extract(epoch from b.blocked_until - v_now) * 1000)::int, false,
      b.tokens_limit, b.requests_limit, 'rate_limited'::text;
    return;
  end if;

  -- The operator's daily cap (OPENAI_DAILY_TOKEN_CAP): nothing more until the next UTC day.
  v_charged_today := case when b.day = v_today then b.tokens_charged else 0 end;
  if p_daily_tokens_cap is not null and v_charged_today + p_tokens > p_daily_tokens_cap then
    return query select
      pg_catalog.ceil(extract(epoch from
        ((v_today + 1)::timestamp at time zone 'utc') - v_now) * 1000)::int,
      false, b.tokens_limit, b.requests_limit, 'daily_cap'::text;
    return;
  end if;

  -- least() ignores nulls: the learned limit, the operator's cap, or the smaller of the two.
  v_tokens := pg_catalog.floor(least(b.tokens_limit, p_tokens_cap) * p_share)::bigint;
  v_requests := pg_catalog.floor(least(b.requests_limit, p_requests_cap) * p_share)::bigint;

  if v_tokens is null and v_requests is null and not b.no_limit_headers then
    -- Nothing known yet: one call goes and its answer's headers teach the limit.
    if b.probe_until is not null and b.probe_until > v_now then
      return query select 200, false, b.tokens_limit, b.requests_limit, 'probing'::text;
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
         tokens_charged = case when o.day = v_today then o.tokens_charged else 0 end + p_tokens,
         requests_charged = case when o.day = v_today then o.requests_charged else 0 end
                            + p_requests,
         refused = case when o.day = v_today then o.refused else 0 end,
         waited_ms = case when o.day = v_today then o.waited_ms else 0 end,
         updated_at = v_now
   where o.budget_key = p_key and o.model = p_model;

  return query select
    pg_catalog.ceil(extract(epoch from v_ready - v_now) * 1000)::int, true,
    b.tokens_limit, b.requests_limit, null::text;
end
$$;

-- Give back a reservation that was never sent (the job was cancelled while it waited).
create or replace function public.mealworker_budget_refund(
  p_key text,
  p_model text,
  p_tokens bigint,
  p_requests int default 1,
  p_tokens_cap bigint default null,
  p_requests_cap bigint default null,
  p_share double precision default 1.0
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
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
end
$$;

-- What an answer's x-ratelimit-* headers said: the limits (null when a header was absent: with
-- both absent, calls are no longer held to one probe at a time) and what remains. A remainder
-- lower than the bucket's own count (the key is used elsewhere too) empties the bucket to match;
-- a higher one changes nothing, so a stale answer never hands out tokens twice.
create or replace function public.mealworker_budget_learn(
  p_key text,
  p_model text,
  p_tokens_limit bigint,
  p_requests_limit bigint,
  p_tokens_remaining bigint default null,
  p_requests_remaining bigint default null
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_window interval := interval '60 seconds';
begin
  insert into public.openai_budgets as o (budget_key, model)
  values (p_key, p_model)
  on conflict (budget_key, model) do nothing;
  update public.openai_budgets o
     set tokens_limit = case when p_tokens_limit > 0 then p_tokens_limit end,
         requests_limit = case when p_requests_limit > 0 then p_requests_limit end,
         no_limit_headers = coalesce(p_tokens_limit, p_requests_limit) is null,
         limits_learned_at = v_now,
         probe_until = null,
         tokens_tat = case
           when p_tokens_limit > 0 and p_tokens_remaining is not null then greatest(
             o.tokens_tat,
             v_now + v_window * (1 - least(greatest(p_tokens_remaining, 0), p_tokens_limit)
                                     ::double precision / p_tokens_limit))
           else o.tokens_tat end,
         requests_tat = case
           when p_requests_limit > 0 and p_requests_remaining is not null then greatest(
             o.requests_tat,
             v_now + v_window * (1 - least(greatest(p_requests_remaining, 0), p_requests_limit)
                                     ::double precision / p_requests_limit))
           else o.requests_tat end,
         updated_at = v_now
   where o.budget_key = p_key and o.model = p_model;
end
$$;

-- OpenAI refused a call (429, not insufficient_quota) although the budget allowed it: the key
-- is used elsewhere, or the limit fell. The bucket is emptied for every worker at once, and no
-- call goes before p_wait_ms (the answer's retry-after, when it gave one).
create or replace function public.mealworker_budget_refused(
  p_key text,
  p_model text,
  p_wait_ms int default 0
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_until timestamptz := v_now + interval '1 millisecond' * greatest(coalesce(p_wait_ms, 0), 0);
begin
  insert into public.openai_budgets as o (budget_key, model)
  values (p_key, p_model)
  on conflict (budget_key, model) do nothing;
  update public.openai_budgets o
     set tokens_tat = greatest(o.tokens_tat, v_now + interval '60 seconds'),
         requests_tat = greatest(o.requests_tat, v_now + interval '60 seconds'),
         blocked_until = greatest(coalesce(o.blocked_until, v_until), v_until),
         probe_until = null,
         refused = o.refused + 1,
         updated_at = v_now
   where o.budget_key = p_key and o.model = p_model;
end
$$;

-- Time a worker spent waiting for the budget, added to today's count (for stats).
create or replace function public.mealworker_budget_waited(p_key text, p_model text, p_ms bigint)
returns void
language sql
volatile
set search_path = ''
as $$
  update public.openai_budgets o
     set waited_ms = o.waited_ms + greatest(p_ms, 0)
   where o.budget_key = p_key and o.model = p_model;
$$;

-- Every budget as operators see it: limits learned, today's counts, how full the bucket is.
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
  blocked_until timestamptz
)
language sql
stable
set search_path = ''
as $$
  select o.budget_key, o.model, o.tokens_limit, o.requests_limit, o.limits_learned_at,
         o.tokens_charged, o.requests_charged, o.refused, o.waited_ms, o.day,
         least(1.0, greatest(0.0,
           extract(epoch from (now() + interval '60 seconds' - greatest(o.tokens_tat, now())))
           / 60.0))::double precision,
         o.blocked_until
    from public.openai_budgets o
   order by o.budget_key, o.model;
$$;

revoke all on function public.mealworker_budget_take(text, text, bigint, int, bigint, bigint,
  double precision, bigint) from public, anon, authenticated;
grant execute on function public.mealworker_budget_take(text, text, bigint, int, bigint, bigint,
  double precision, bigint) to service_role;
revoke all on function public.mealworker_budget_refund(text, text, bigint, int, bigint, bigint,
  double precision) from public, anon, authenticated;
grant execute on function public.mealworker_budget_refund(text, text, bigint, int, bigint, bigint,
  double precision) to service_role;
revoke all on function public.mealworker_budget_learn(text, text, bigint, bigint, bigint, bigint)
  from public, anon, authenticated;
grant execute on function public.mealworker_budget_learn(text, text, bigint, bigint, bigint, bigint)
  to service_role;
revoke all on function public.mealworker_budget_refused(text, text, int)
  from public, anon, authenticated;
grant execute on function public.mealworker_budget_refused(text, text, int) to service_role;
revoke all on function public.mealworker_budget_waited(text, text, bigint)
  from public, anon, authenticated;
grant execute on function public.mealworker_budget_waited(text, text, bigint) to service_role;
revoke all on function public.mealworker_budget_stats() from public, anon, authenticated;
grant execute on function public.mealworker_budget_stats() to service_role;

notify pgrst, 'reload schema';
