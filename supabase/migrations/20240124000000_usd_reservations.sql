-- A call's worst-case cost under OPENAI_DAILY_USD_CAP is held while the call can still be
-- running, not until the UTC day ends.
--
-- `mealworker_budget_take` added each call's worst case to one sum per budget key and day
-- (`openai_spend.usd_reserved`) and `mealworker_budget_spent` took it out after the answer. A
-- worker killed mid-call (SIGKILL, out of memory, a reboot) never ran `spent`: its worst case
-- stayed in the sum until midnight, near the cap holding back every job of the fleet for money
-- no call was spending, and `stats` showed it under way.
--
-- Now each call's worst case is a row of `openai_reservations`, ended by its own `spent` (or
-- `refund`), and counted while its call can still be running: until the call's own time is up
-- (`p_expires_ms` from the reservation: the worker passes OPENAI_TIMEOUT_SECONDS plus a margin,
-- as each reservation is one HTTP request) and, for a call of a job whose lease was held when
-- it reserved, for as long as that lease stays held (the job's id and lease token, kept by the
-- worker's heartbeats). So a worker killed mid-call holds its worst case until both its lease
-- and its call's time have run out, about two and a half minutes by default, not until
-- midnight; and a worker cut off from the database, whose lease runs out while its call may
-- still be answered, still has that call counted until the call's time is up, so the fleet
-- cannot overshoot the cap by it.
-- A call that fits what was spent but not the calls under way as well waits for them (reason
-- `usd_in_flight`, asked again every second, its place in the fair line kept) instead of being
-- deferred to midnight: near the cap, the worst cases of a few concurrent calls made the next
-- job wait a whole day while the cap still had room.
-- The cap check counts what was spent, the live reservations and this call, all under the key's
-- `openai_spend` row lock as before, so concurrent workers still cannot overshoot the cap
-- between them. Each take of dollars deletes the key's ended reservations (those of earlier
-- days included) in the pass that sums the live ones: the table holds the calls in flight and
-- those ended since the key's last take.
--
-- `openai_spend.usd_reserved` remains for reservations made without a lease or an expiry: those
-- of workers of the previous version during a rolling deploy (their `spent` takes them out, as
-- before) and direct callers of `mealworker_budget_take` that pass neither. What it holds when
-- this migration runs stays counted until the day ends or until those calls' `spent`, since
-- they may still be running. `usd_reserved_today` (take) and `key_usd_reserved` (stats) are
-- that sum plus the live reservations.

create table if not exists public.openai_reservations (
  id uuid primary key default gen_random_uuid(),
  budget_key text not null,
  model text not null,
  day date not null,
  usd numeric not null check (usd >= 0),
  job_id bigint,
  lease_token uuid,
  expires_at timestamptz,
  created_at timestamptz not null default now(),
  check (lease_token is not null and job_id is not null or expires_at is not null)
);

create index if not exists openai_reservations_budget_key
  on public.openai_reservations (budget_key, day);

comment on table public.openai_reservations is
  'The worst-case US dollar cost of each OpenAI call in flight, held while the job lease it is '
  'bound to is held, or until it expires (mealworker).';

alter table public.openai_reservations enable row level security;
revoke all on table public.openai_reservations from public, anon, authenticated;
grant all on table public.openai_reservations to service_role;

-- The key's reservations (of every day), each with whether it still holds its worst case
-- towards p_today (see above). One join, not a lookup per row: take() reads them all.
create or replace function mealworker_private.openai_reservations_of(
  p_key text,
  p_today date,
  p_now timestamptz
)
returns table (id uuid, usd numeric, live boolean)
language sql
stable
set search_path = ''
as $$
  select r.id, r.usd,
         r.day = p_today
         and (coalesce(r.expires_at > p_now, false) or j.id is not null)
    from public.openai_reservations r
    left join public.background_jobs j
      on j.id = r.job_id
     and j.lease_token = r.lease_token  -- implies status = 'processing' (check constraint)
     and j.lease_expires_at > p_now
   where r.budget_key = p_key;
$$;

-- The worst case of the key's live reservations today.
create or replace function mealworker_private.openai_reserved_usd(
  p_key text,
  p_today date,
  p_now timestamptz
)
returns numeric
language sql
stable
set search_path = ''
as $$
  select coalesce(sum(r.usd) filter (where r.live), 0)
    from mealworker_private.openai_reservations_of(p_key, p_today, p_now) r;
$$;

drop function if exists public.mealworker_budget_take(text, text, bigint, int, bigint, bigint,
  double precision, bigint, double precision, double precision);

-- Reserve one call's charge (20240120000001_budget_caps.sql), its worst-case cost p_usd now a
-- reservation of its own: live for p_expires_ms from now, and as long as the lease of job
-- p_job_id stays held when p_lease_token holds it now; neither given, added to
-- openai_spend.usd_reserved as before.
-- reservation: its id, for `mealworker_budget_spent` or `_refund` (null when no dollars are
-- counted or none was made).
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
  p_daily_usd_cap double precision default null,
  p_job_id bigint default null,
  p_lease_token uuid default null,
  p_expires_ms int default null
)
returns table (
  wait_ms int, reserved boolean, tokens_limit bigint, requests_limit bigint, reason text,
  retry_at timestamptz, tokens_charged_today bigint, usd_spent_today double precision,
  usd_reserved_today double precision, reservation uuid
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
  v_live numeric := 0;
  v_ended uuid[];
  v_lease uuid;
  v_reservation uuid;
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
  if p_expires_ms < 0 then
    raise exception 'mealworker_budget_take: a reservation cannot expire in the past (got % ms)',
                    p_expires_ms
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
  -- order, then reservations), and only when dollars are counted.
  if p_usd is not null then
    insert into public.openai_spend as x (budget_key, day)
    values (p_key, v_today)
    on conflict (budget_key, day) do nothing;
    select * into s
      from public.openai_spend x
     where x.budget_key = p_key and x.day = v_today
       for update;
    -- The live reservations counted, the ended ones deleted, in one pass over the key's.
    select coalesce(sum(r.usd) filter (where r.live), 0),
           pg_catalog.array_agg(r.id) filter (where not r.live)
      into v_live, v_ended
      from mealworker_private.openai_reservations_of(p_key, v_today, v_now) r;
    if v_ended is not null then
      delete from public.openai_reservations r where r.id = any (v_ended);
    end if;
  else
    select * into s
      from public.openai_spend x
     where x.budget_key = p_key and x.day = v_today;
    if found then
      v_live := mealworker_private.openai_reserved_usd(p_key, v_today, v_now);
    end if;
  end if;
  v_charged_today := case when b.day = v_today then b.tokens_charged else 0 end;

  if b.blocked_until > v_now then
    return query select
      pg_catalog.ceil(extract(epoch from b.blocked_until - v_now) * 1000)::int, false,
      b.tokens_limit, b.requests_limit, 'rate_limited'::text, b.blocked_until, v_charged_today,
      s.usd_spent::double precision, (s.usd_reserved + v_live)::double precision,
      null::uuid;
    return;
  end if;

  -- The operator's daily caps: nothing more until the next UTC day.
  if p_daily_tokens_cap is not null and v_charged_today + p_tokens > p_daily_tokens_cap then
    v_capped_by := 'tokens';
  elsif p_daily_usd_cap is not null
        and coalesce(s.usd_spent, 0) + coalesce(s.usd_reserved, 0) + v_live + p_usd
            > p_daily_usd_cap then
    if v_live > 0
       and coalesce(s.usd_spent, 0) + coalesce(s.usd_reserved, 0) + p_usd <= p_daily_usd_cap then
      -- It fits once the calls under way have settled (each at its real cost, mostly far below
      -- its worst case, or ended with its time): a wait of a second, not of a day, and the
      -- budget is not marked capped. No attempt is spent on it.
      return query select 1000, false, b.tokens_limit, b.requests_limit,
        'usd_in_flight'::text, v_now + interval '1 second', v_charged_today,
        s.usd_spent::double precision, (s.usd_reserved + v_live)::double precision, null::uuid;
      return;
    end if;
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
      (s.usd_reserved + v_live)::double precision, null::uuid;
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
        (s.usd_reserved + v_live)::double precision, null::uuid;
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
    if p_lease_token is not null
       and exists (select 1
                     from public.background_jobs j
                    where j.id = p_job_id
                      and j.lease_token = p_lease_token  -- implies status = 'processing'
                      and j.lease_expires_at > v_now) then
      v_lease := p_lease_token;
    end if;
    if v_lease is not null or p_expires_ms is not null then
      insert into public.openai_reservations as r
        (budget_key, model, day, usd, job_id, lease_token, expires_at, created_at)
      values (p_key, p_model, v_today, p_usd, p_job_id, v_lease,
              v_now + interval '1 millisecond' * p_expires_ms,
              v_now)
      returning r.id into v_reservation;
      update public.openai_spend x
         set daily_usd_cap = p_daily_usd_cap, updated_at = v_now
       where x.budget_key = p_key and x.day = v_today;
    else
      update public.openai_spend x
         set usd_reserved = x.usd_reserved + p_usd,
             daily_usd_cap = p_daily_usd_cap,
             updated_at = v_now
       where x.budget_key = p_key and x.day = v_today;
    end if;
  end if;

  return query select
    pg_catalog.ceil(extract(epoch from v_ready - v_now) * 1000)::int, true,
    b.tokens_limit, b.requests_limit, null::text, v_ready, v_charged_today + p_tokens,
    s.usd_spent::double precision,
    (s.usd_reserved + v_live + p_usd)::double precision, v_reservation;
end
$$;

drop function if exists public.mealworker_budget_take_turn(text, text, bigint, uuid, int, bigint,
  bigint, double precision, bigint, double precision, double precision, bigint, timestamptz,
  text, int, int, int);

-- Take a call's charge in its turn (20240121000000_fair_budget_turns.sql); p_lease_token and
-- p_expires_ms are passed on to take(), whose reservation id it returns.
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
  p_stale_ms int default 10000,
  p_lease_token uuid default null,
  p_expires_ms int default null
)
returns table (
  wait_ms int, reserved boolean, tokens_limit bigint, requests_limit bigint, reason text,
  retry_at timestamptz, tokens_charged_today bigint, usd_spent_today double precision,
  usd_reserved_today double precision, ahead int, reservation uuid
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
                        k.usd_reserved_today, 0, k.reservation
      from public.mealworker_budget_take(
        p_key => p_key, p_model => p_model, p_tokens => p_tokens, p_requests => p_requests,
        p_tokens_cap => p_tokens_cap, p_requests_cap => p_requests_cap, p_share => p_share,
        p_daily_tokens_cap => p_daily_tokens_cap, p_usd => p_usd,
        p_daily_usd_cap => p_daily_usd_cap, p_job_id => p_job_id,
        p_lease_token => p_lease_token, p_expires_ms => p_expires_ms) k;
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
      v_ready - v_lead, null::bigint, null::double precision, null::double precision, v_ahead,
      null::uuid;
    return;
  end if;

  -- Its turn.
  select * into t
    from public.mealworker_budget_take(
      p_key => p_key, p_model => p_model, p_tokens => p_tokens, p_requests => p_requests,
      p_tokens_cap => p_tokens_cap, p_requests_cap => p_requests_cap, p_share => p_share,
      p_daily_tokens_cap => p_daily_tokens_cap, p_usd => p_usd,
      p_daily_usd_cap => p_daily_usd_cap, p_job_id => p_job_id,
      p_lease_token => p_lease_token, p_expires_ms => p_expires_ms);
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
  elsif t.reason is null or t.reason not in ('probing', 'rate_limited', 'usd_in_flight') then
    -- Refused for good (the daily cap): out of the line.
    delete from public.openai_budget_waiters w
     where w.budget_key = p_key and w.model = p_model and w.waiter = p_waiter;
  else
    t.wait_ms := least(t.wait_ms, greatest(p_refresh_ms, 1));  -- still waiting: ask again
  end if;
  return query select t.wait_ms, t.reserved, t.tokens_limit, t.requests_limit, t.reason,
                      t.retry_at, t.tokens_charged_today, t.usd_spent_today,
                      t.usd_reserved_today, v_ahead, t.reservation;
end
$$;

drop function if exists public.mealworker_budget_refund(text, text, bigint, int, bigint, bigint,
  double precision, double precision);

-- Give back a reservation that was never sent (the job was cancelled while it waited): its
-- tokens, and its worst-case cost, by its id (p_reservation) or else from usd_reserved (p_usd).
create or replace function public.mealworker_budget_refund(
  p_key text,
  p_model text,
  p_tokens bigint,
  p_requests int default 1,
  p_tokens_cap bigint default null,
  p_requests_cap bigint default null,
  p_share double precision default 1.0,
  p_usd double precision default null,
  p_reservation uuid default null
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
  if p_reservation is not null then
    delete from public.openai_reservations r
     where r.id = p_reservation and r.budget_key = p_key;
  elsif p_usd is not null then
    update public.openai_spend x
       set usd_reserved = greatest(x.usd_reserved - greatest(p_usd, 0), 0),
           updated_at = v_now
     where x.budget_key = p_key and x.day = v_today;
  end if;
end
$$;

drop function if exists public.mealworker_budget_spent(text, text, double precision,
  double precision, bigint, bigint, bigint);

-- An answer came back (or a call ended without one): its reservation ends (p_reservation, the
-- id take() returned; without one, its worst case p_reserved_usd leaves usd_reserved), what it
-- cost by its usage (p_cost_usd) is spent, and its tokens are counted. Returns what the key has
-- spent today, in US dollars (null when dollars are not counted). The spend row is locked
-- before the reservation, in take()'s order.
create or replace function public.mealworker_budget_spent(
  p_key text,
  p_model text,
  p_reserved_usd double precision default null,
  p_cost_usd double precision default null,
  p_input_tokens bigint default 0,
  p_cached_tokens bigint default 0,
  p_output_tokens bigint default 0,
  p_reservation uuid default null
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
  if p_reserved_usd is null and p_cost_usd is null and p_reservation is null then
    return null;
  end if;
  insert into public.openai_spend as x (budget_key, day)
  values (p_key, v_today)
  on conflict (budget_key, day) do nothing;
  update public.openai_spend x
     set usd_reserved = case when p_reservation is null
                             then greatest(x.usd_reserved
                                           - greatest(coalesce(p_reserved_usd, 0), 0), 0)
                             else x.usd_reserved end,
         usd_spent = x.usd_spent + greatest(coalesce(p_cost_usd, 0), 0),
         updated_at = v_now
   where x.budget_key = p_key and x.day = v_today
  returning x.usd_spent into v_spent;
  if p_reservation is not null then
    delete from public.openai_reservations r
     where r.id = p_reservation and r.budget_key = p_key;
  end if;
  return v_spent::double precision;
end
$$;

drop function if exists public.mealworker_budget_stats();

-- Every budget as operators see it (20240120000001_budget_caps.sql); key_usd_reserved is the
-- worst case of the key's live reservations (and of usd_reserved), never of ended ones.
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
         (x.usd_reserved
          + mealworker_private.openai_reserved_usd(o.budget_key, t.day, now()))::double precision,
         x.daily_usd_cap::double precision
    from public.openai_budgets o
   cross join today t
    left join public.openai_spend x on x.budget_key = o.budget_key and x.day = t.day
   order by o.budget_key, o.model;
$$;

revoke all on function mealworker_private.openai_reservations_of(text, date, timestamptz)
  from public;
grant execute on function mealworker_private.openai_reservations_of(text, date, timestamptz)
  to service_role;
revoke all on function mealworker_private.openai_reserved_usd(text, date, timestamptz)
  from public;
grant execute on function mealworker_private.openai_reserved_usd(text, date, timestamptz)
  to service_role;
revoke all on function public.mealworker_budget_take(text, text, bigint, int, bigint, bigint,
  double precision, bigint, double precision, double precision, bigint, uuid, int)
  from public, anon, authenticated;
grant execute on function public.mealworker_budget_take(text, text, bigint, int, bigint, bigint,
  double precision, bigint, double precision, double precision, bigint, uuid, int)
  to service_role;
revoke all on function public.mealworker_budget_take_turn(text, text, bigint, uuid, int, bigint,
  bigint, double precision, bigint, double precision, double precision, bigint, timestamptz,
  text, int, int, int, uuid, int)
  from public, anon, authenticated;
grant execute on function public.mealworker_budget_take_turn(text, text, bigint, uuid, int,
  bigint, bigint, double precision, bigint, double precision, double precision, bigint,
  timestamptz, text, int, int, int, uuid, int)
  to service_role;
revoke all on function public.mealworker_budget_refund(text, text, bigint, int, bigint, bigint,
  double precision, double precision, uuid) from public, anon, authenticated;
grant execute on function public.mealworker_budget_refund(text, text, bigint, int, bigint, bigint,
  double precision, double precision, uuid) to service_role;
revoke all on function public.mealworker_budget_spent(text, text, double precision,
  double precision, bigint, bigint, bigint, uuid) from public, anon, authenticated;
grant execute on function public.mealworker_budget_spent(text, text, double precision,
  double precision, bigint, bigint, bigint, uuid) to service_role;
revoke all on function public.mealworker_budget_stats() from public, anon, authenticated;
grant execute on function public.mealworker_budget_stats() to service_role;

notify pgrst, 'reload schema';
