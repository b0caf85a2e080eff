-- Fair turns on a short OpenAI budget (issue 24): when calls must wait for the fleet's budget,
-- they are served round-robin across users, oldest job first, not in the order they asked.
--
-- `mealworker_budget_take` reserves a call's charge the moment it asks, so a short budget went
-- to whichever worker asked first or most often: one plan makes about ten calls, so a user
-- with three plans in flight kept the budget while another user's older plan waited. Here a
-- call that cannot go at once takes a place in a waiting line kept in the database (one row per
-- waiting call in `openai_budget_waiters`), so that every worker on every machine agrees on
-- whose turn it is, and it reserves its charge only when its turn has come.
--
-- The turn order. Each waiting call belongs to a job (its age is the job's `created_at`, kept
-- across retries) and to a group: the meal plan's user, else the job alone. The line is served
-- in rounds: a group's oldest waiting call is in the current round (the next one if the group
-- was served in this round already), its second oldest in the round after, and so on; within a
-- round the oldest job goes first. So every user gets one call per round whatever number of
-- plans (or of days written in parallel) they have in flight, the oldest plan is served first
-- both across users and within one, and one plan finished is worth more to its user than two
-- half made. The only state kept for this is the current round and the groups served in it
-- (`openai_budget_rounds`), forgotten when the line empties. Ordering by the job's age rather
-- than by when the call asked means a worker that asks more often gains nothing, and a waiter
-- that dropped out (its worker lost the database for a while) gets its place back.
--
-- The rule. A call may reserve when the budget, after every live waiter ranked ahead of it has
-- taken its charge, still holds this call's charge (within `p_lead_ms`: it reserves that much
-- early and sleeps the rest). With nobody waiting this is the check take() makes anyway: the
-- fast path stays one statement and writes nothing to the line. A call that may not go is
-- given the time its turn should come (or `p_refresh_ms`, whichever is sooner) and asks again
-- then, which also shows it is alive; a waiter not seen for `p_stale_ms` (its worker died) no
-- longer counts and is removed by the next caller, so it never blocks the line. Waiting costs
-- no throughput: the bucket keeps refilling while the line waits for its turn to ask, and the
-- charges ahead are counted, never the waiters' number.

create table if not exists public.openai_budget_waiters (
  budget_key text not null,
  model text not null,
  waiter uuid not null,
  job_id bigint,
  turn_group text not null,
  job_created_at timestamptz not null,
  tokens bigint not null check (tokens >= 0),
  requests int not null check (requests >= 0),
  joined_at timestamptz not null default now(),
  seen_at timestamptz not null default now(),
  primary key (budget_key, model, waiter)
);

comment on table public.openai_budget_waiters is
  'OpenAI calls waiting for their turn on a short budget, one row per call (mealworker).';

alter table public.openai_budget_waiters enable row level security;
revoke all on table public.openai_budget_waiters from public, anon, authenticated;
grant all on table public.openai_budget_waiters to service_role;

-- The round each group was last served in, while the line has been waiting: the largest is the
-- current round; the groups in it wait for the next.
create table if not exists public.openai_budget_rounds (
  budget_key text not null,
  model text not null,
  turn_group text not null,
  round bigint not null,
  primary key (budget_key, model, turn_group)
);

comment on table public.openai_budget_rounds is
  'The round each group of OpenAI calls was last served in, on a short budget (mealworker).';

alter table public.openai_budget_rounds enable row level security;
revoke all on table public.openai_budget_rounds from public, anon, authenticated;
grant all on table public.openai_budget_rounds to service_role;

-- When a charge of p_tokens and p_requests fits in the bucket (the GCRA of
-- 20240118000000_openai_budget.sql, at the limits take() applies): at once when the bucket holds
-- it, else when it will have refilled that much. No limit known: now (take() probes).
create or replace function mealworker_private.budget_ready_at(
  p_now timestamptz,
  p_blocked_until timestamptz,
  p_tokens_tat timestamptz,
  p_requests_tat timestamptz,
  p_tokens_limit bigint,
  p_requests_limit bigint,
  p_tokens bigint,
  p_requests bigint
)
returns timestamptz
language sql
immutable
set search_path = ''
as $$
  select greatest(
    p_now,
    p_blocked_until,
    case when p_tokens_limit > 0 then
      greatest(p_tokens_tat, p_now) - interval '60 seconds'
      + interval '60 seconds' * (p_tokens::double precision / p_tokens_limit) end,
    case when p_requests_limit > 0 then
      greatest(p_requests_tat, p_now) - interval '60 seconds'
      + interval '60 seconds' * (p_requests::double precision / p_requests_limit) end)
$$;

-- The waiting line in turn order, each call with its place (1: next) and its round (turn);
-- only the waiters seen within p_stale_ms. Null key and model: every line.
create or replace function public.mealworker_budget_waiters(
  p_key text default null,
  p_model text default null,
  p_stale_ms int default 10000
)
returns table (
  budget_key text,
  model text,
  place bigint,
  turn bigint,
  waiter uuid,
  job_id bigint,
  turn_group text,
  job_created_at timestamptz,
  tokens bigint,
  requests int,
  waiting_ms bigint
)
language sql
stable
set search_path = ''
as $$
  select w.budget_key, w.model,
         pg_catalog.row_number() over (
           partition by w.budget_key, w.model
           order by w.turn, w.job_created_at, w.job_id, w.joined_at, w.waiter),
         w.turn, w.waiter, w.job_id, w.turn_group, w.job_created_at, w.tokens, w.requests,
         (extract(epoch from pg_catalog.clock_timestamp() - w.joined_at) * 1000)::bigint
    from (select x.*,
                 -- The group's first round: the current one, or the next if it was served in it.
                 coalesce(c.round, 0) + case when g.round >= c.round then 1 else 0 end
                 + pg_catalog.row_number() over (
                     partition by x.budget_key, x.model, x.turn_group
                     order by x.job_created_at, x.job_id, x.joined_at, x.waiter) - 1 as turn
            from public.openai_budget_waiters x
            left join lateral (select max(o.round) as round
                                 from public.openai_budget_rounds o
                                where o.budget_key = x.budget_key and o.model = x.model) c
              on true
            left join public.openai_budget_rounds g
              on g.budget_key = x.budget_key and g.model = x.model
             and g.turn_group = x.turn_group
           where (p_key is null or x.budget_key = p_key)
             and (p_model is null or x.model = p_model)
             and x.seen_at > pg_catalog.clock_timestamp()
                             - interval '1 millisecond' * greatest(p_stale_ms, 1)) w
   order by 1, 2, 3;
$$;

-- Take a call's charge when it is the call's turn (mealworker_budget_take's parameters and
-- answer, passed on), else keep its place in the line. p_waiter names the call (the same on
-- every ask of one call); p_job_id, p_job_created_at and p_group say whose it is: without a
-- group the job's meal plan's user is looked up, else the job is its own group (a call of no
-- job is its own group, as old as its first ask). Returns, besides take()'s columns, ahead:
-- the live waiters ranked before this call. reason 'waiting': not its turn yet, ask again
-- after wait_ms.
create or replace function public.mealworker_budget_take_turn(
  p_key text,
  p_model text,
  p_tokens bigint,
  p_waiter uuid,
  p_requests int default 1,
  p_tokens_cap bigint default null,
  p_requests_cap bigint default null,
  p_share double precision default 1.0,
  p_daily_tokens_cap bigint default null,
  p_usd double precision default null,
  p_daily_usd_cap double precision default null,
  p_job_id bigint default null,
  p_job_created_at timestamptz default null,
  p_group text default null,
  p_lead_ms int default 250,
  p_refresh_ms int default 2000,
  p_stale_ms int default 10000
)
returns table (
  wait_ms int, reserved boolean, tokens_limit bigint, requests_limit bigint, reason text,
  retry_at timestamptz, tokens_charged_today bigint, usd_spent_today double precision,
  usd_reserved_today double precision, ahead int
)
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_lead interval := interval '1 millisecond' * greatest(coalesce(p_lead_ms, 0), 0);
  v_stale_ms int := greatest(coalesce(p_stale_ms, 10000), 1);
  v_alive_since timestamptz;
  b public.openai_budgets;
  v_tokens bigint;
  v_requests bigint;
  v_ready timestamptz;
  v_group text;
  v_created timestamptz;
  v_turn bigint;
  v_ahead int := 0;
  v_ahead_tokens bigint := 0;
  v_ahead_requests bigint := 0;
  t record;
begin
  if p_waiter is null then
    raise exception 'mealworker_budget_take_turn: every call needs a waiter id'
      using errcode = '22023';
  end if;
  if p_tokens is null or p_tokens < 0 or p_requests is null or p_requests < 0 then
    raise exception 'mealworker_budget_take_turn: a charge is a non-negative number of tokens '
                    'and requests (got % and %)', p_tokens, p_requests
      using errcode = '22023';
  end if;
  v_alive_since := v_now - interval '1 millisecond' * v_stale_ms;

  -- The budget's row lock orders every caller, here and in take() (which takes it again).
  select * into b
    from public.openai_budgets o
   where o.budget_key = p_key and o.model = p_model
     for update;
  if not found then
    insert into public.openai_budgets as o (budget_key, model)
    values (p_key, p_model)
    on conflict (budget_key, model) do nothing;
    select * into b
      from public.openai_budgets o
     where o.budget_key = p_key and o.model = p_model
       for update;
  end if;
  -- The limits take() applies (least() ignores nulls).
  v_tokens := pg_catalog.floor(least(b.tokens_limit, p_tokens_cap) * p_share)::bigint;
  v_requests := pg_catalog.floor(least(b.requests_limit, p_requests_cap) * p_share)::bigint;

  -- The fast path: nobody waits and the charge fits. Nothing is written to the line.
  v_ready := mealworker_private.budget_ready_at(v_now, b.blocked_until, b.tokens_tat,
    b.requests_tat, v_tokens, v_requests, p_tokens, p_requests);
  if v_ready <= v_now + v_lead
     and not exists (select 1
                       from public.openai_budget_waiters w
                      where w.budget_key = p_key and w.model = p_model
                        and w.seen_at > v_alive_since) then
    return query select k.wait_ms, k.reserved, k.tokens_limit, k.requests_limit, k.reason,
                        k.retry_at, k.tokens_charged_today, k.usd_spent_today,
                        k.usd_reserved_today, 0
      from public.mealworker_budget_take(
        p_key => p_key, p_model => p_model, p_tokens => p_tokens, p_requests => p_requests,
        p_tokens_cap => p_tokens_cap, p_requests_cap => p_requests_cap, p_share => p_share,
        p_daily_tokens_cap => p_daily_tokens_cap, p_usd => p_usd,
        p_daily_usd_cap => p_daily_usd_cap) k;
    return;
  end if;

  -- Join the line, or show this call is still waiting.
  update public.openai_budget_waiters w
     set seen_at = v_now, tokens = p_tokens, requests = p_requests
   where w.budget_key = p_key and w.model = p_model and w.waiter = p_waiter;
  if not found then
    if not exists (select 1
                     from public.openai_budget_waiters w
                    where w.budget_key = p_key and w.model = p_model
                      and w.seen_at > v_alive_since) then
      -- The first to wait: the rounds start again.
      delete from public.openai_budget_rounds r
       where r.budget_key = p_key and r.model = p_model;
    end if;
    v_group := p_group;
    v_created := p_job_created_at;
    if p_job_id is not null and (v_group is null or v_created is null) then
      select coalesce(v_group, 'user:' || mp.user_id::text), coalesce(v_created, j.created_at)
        into v_group, v_created
        from public.background_jobs j
        left join public.meal_plans mp on mp.id = j.meal_plan_id
       where j.id = p_job_id;
    end if;
    insert into public.openai_budget_waiters as w
      (budget_key, model, waiter, job_id, turn_group, job_created_at, tokens, requests,
       joined_at, seen_at)
    values (p_key, p_model, p_waiter, p_job_id,
            coalesce(v_group, 'job:' || p_job_id::text, 'call:' || p_waiter::text),
            coalesce(v_created, v_now), p_tokens, p_requests, v_now, v_now);
  end if;
  -- A waiter whose worker stopped asking is out of the line.
  delete from public.openai_budget_waiters w
   where w.budget_key = p_key and w.model = p_model and w.seen_at <= v_alive_since;

  -- This call's place, the charges ahead of it, and when the bucket holds them and its own.
  with l as (select * from public.mealworker_budget_waiters(p_key, p_model, v_stale_ms))
  select m.turn, m.turn_group,
         (select count(*)::int from l where l.place < m.place),
         (select coalesce(sum(l.tokens), 0) from l where l.place < m.place),
         (select coalesce(sum(l.requests), 0) from l where l.place < m.place)
    into v_turn, v_group, v_ahead, v_ahead_tokens, v_ahead_requests
    from l m
   where m.waiter = p_waiter;
  v_ahead := coalesce(v_ahead, 0);  -- (none when its row was out of sight)
  v_ahead_tokens := coalesce(v_ahead_tokens, 0);
  v_ahead_requests := coalesce(v_ahead_requests, 0);
  v_ready := mealworker_private.budget_ready_at(v_now, b.blocked_until, b.tokens_tat,
    b.requests_tat, v_tokens, v_requests, v_ahead_tokens + p_tokens,
    v_ahead_requests + p_requests);
  if v_ready > v_now + v_lead then
    return query select
      least(pg_catalog.ceil(extract(epoch from v_ready - v_lead - v_now) * 1000),
            greatest(p_refresh_ms, 1))::int,
      false, b.tokens_limit, b.requests_limit, 'waiting'::text,
      v_ready - v_lead, null::bigint, null::double precision, null::double precision, v_ahead;
    return;
  end if;

  -- Its turn.
  select * into t
    from public.mealworker_budget_take(
      p_key => p_key, p_model => p_model, p_tokens => p_tokens, p_requests => p_requests,
      p_tokens_cap => p_tokens_cap, p_requests_cap => p_requests_cap, p_share => p_share,
      p_daily_tokens_cap => p_daily_tokens_cap, p_usd => p_usd,
      p_daily_usd_cap => p_daily_usd_cap);
  if t.reserved then
    -- Served: out of the line, and its group has had its turn in this round.
    delete from public.openai_budget_waiters w
     where w.budget_key = p_key and w.model = p_model and w.waiter = p_waiter;
    if v_turn is not null then  -- (null: its row was out of sight, e.g. p_stale_ms tiny)
      insert into public.openai_budget_rounds as r (budget_key, model, turn_group, round)
      values (p_key, p_model, v_group, v_turn)
      on conflict (budget_key, model, turn_group)
      do update set round = greatest(r.round, excluded.round);
      delete from public.openai_budget_rounds r
       where r.budget_key = p_key and r.model = p_model and r.round < v_turn;
    end if;
  elsif t.reason is null or t.reason not in ('probing', 'rate_limited') then
    -- Refused for good (the daily cap): out of the line.
    delete from public.openai_budget_waiters w
     where w.budget_key = p_key and w.model = p_model and w.waiter = p_waiter;
  else
    t.wait_ms := least(t.wait_ms, greatest(p_refresh_ms, 1));  -- still waiting: ask again
  end if;
  return query select t.wait_ms, t.reserved, t.tokens_limit, t.requests_limit, t.reason,
                      t.retry_at, t.tokens_charged_today, t.usd_spent_today,
                      t.usd_reserved_today, v_ahead;
end
$$;

-- A waiting call gives up its place (its job was cancelled, the worker is shutting down).
create or replace function public.mealworker_budget_leave(p_key text, p_model text, p_waiter uuid)
returns void
language sql
volatile
set search_path = ''
as $$
  delete from public.openai_budget_waiters w
   where w.budget_key = p_key and w.model = p_model and w.waiter = p_waiter;
$$;

revoke all on function mealworker_private.budget_ready_at(timestamptz, timestamptz, timestamptz,
  timestamptz, bigint, bigint, bigint, bigint) from public;
grant execute on function mealworker_private.budget_ready_at(timestamptz, timestamptz,
  timestamptz, timestamptz, bigint, bigint, bigint, bigint) to service_role;
revoke all on function public.mealworker_budget_waiters(text, text, int)
  from public, anon, authenticated;
grant execute on function public.mealworker_budget_waiters(text, text, int) to service_role;
revoke all on function public.mealworker_budget_take_turn(text, text, bigint, uuid, int, bigint,
  bigint, double precision, bigint, double precision, double precision, bigint, timestamptz,
  text, int, int, int)
  from public, anon, authenticated;
grant execute on function public.mealworker_budget_take_turn(text, text, bigint, uuid, int,
  bigint, bigint, double precision, bigint, double precision, double precision, bigint,
  timestamptz, text, int, int, int)
  to service_role;
revoke all on function public.mealworker_budget_leave(text, text, uuid)
  from public, anon, authenticated;
grant execute on function public.mealworker_budget_leave(text, text, uuid) to service_role;

notify pgrst, 'reload schema';
