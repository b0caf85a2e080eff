-- Promises kept and Supabase details: one request validation (the worker's), idempotency keys
-- without a user, cancel that says what it did, a meal plan's job by the plan's id, honest
-- OpenAI counts, user_id -> auth.users, a daily cap per user, and anonymous sign-ins refused.
--
-- Nothing existing is dropped but one function whose result gains a column
-- (mealworker_cancel_jobs), re-created at once with the same grants.

create schema if not exists mealworker_private;
revoke all on schema mealworker_private from public;
-- The service role may call mealworker_request_problem, which uses the helpers below; it gets
-- no privilege on the ledger table.
grant usage on schema mealworker_private to service_role;

-- ---------------------------------------------------------------------------------------------
-- 1. Request validation: exactly what the worker's MealPlanRequest (pydantic, lax mode) accepts.
--    tests/test_request_contract.py feeds the same random requests to both and checks they
--    agree. Rules mirrored:
--    * integers: a JSON integer, a number with no fractional part, true/false (1/0), or text
--      of an integer (whitespace around, a sign, `_` between digits, a `.0` tail);
--    * lists of choices (meals, diet, allergies): a JSON array of text, or one text of
--      comma-separated words; each word trimmed, lower-cased, `-` read as `_`; allergies also
--      by their aliases (mealplan_cli.generation.models.ALLERGEN_ALIASES);
--    * short texts (exclude, cuisines): the same lists; each item 1 to 40 characters once
--      trimmed;
--    * list lengths count the items as given, before duplicates are merged.
-- ---------------------------------------------------------------------------------------------

-- White space as Rust's str::trim (pydantic's) and as Python's str.strip know it.
create or replace function mealworker_private.ws_pydantic()
returns text language sql immutable set search_path = '' as $$
  select E'\u0009\u000a\u000b\u000c\u000d\u0020\u0085\u00a0\u1680\u2000\u2001\u2002\u2003'
         || E'\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000'
$$;

create or replace function mealworker_private.ws_python()
returns text language sql immutable set search_path = '' as $$
  select mealworker_private.ws_pydantic() || E'\u001c\u001d\u001e\u001f'
$$;

-- An integer as pydantic reads one, or null when it is not one.
create or replace function mealworker_private.lax_int(p_value jsonb)
returns numeric
language sql
immutable
set search_path = ''
as $$
  select case pg_catalog.jsonb_typeof(p_value)
    when 'number' then
      case when (p_value #>> '{}')::numeric = pg_catalog.trunc((p_value #>> '{}')::numeric)
           then (p_value #>> '{}')::numeric end
    when 'boolean' then case when (p_value #>> '{}')::boolean then 1 else 0 end
    when 'string' then (
      select case when t.v ~ '^[+-]?[0-9]+(_[0-9]+)*(\.0+)?$'
                  then pg_catalog.replace(t.v, '_', '')::numeric end
        from (select pg_catalog.btrim(p_value #>> '{}', mealworker_private.ws_pydantic()) as v) t)
  end
$$;

-- The items of a list field: a JSON array (a non-text item becomes null), or a text split at
-- commas into trimmed, non-empty words. Null when the value is neither.
create or replace function mealworker_private.list_items(p_value jsonb)
returns text[]
language sql
immutable
set search_path = ''
as $$
  select case pg_catalog.jsonb_typeof(p_value)
    when 'array' then coalesce((
      select pg_catalog.array_agg(
               case when pg_catalog.jsonb_typeof(e.value) = 'string' then e.value #>> '{}' end
               order by e.ord)
        from pg_catalog.jsonb_array_elements(p_value) with ordinality as e (value, ord)
    ), '{}')
    when 'string' then coalesce((
      select pg_catalog.array_agg(w.word order by w.ord)
        from (select pg_catalog.btrim(p.part, mealworker_private.ws_python()) as word, p.ord
                from pg_catalog.unnest(pg_catalog.string_to_array(p_value #>> '{}', ','))
                     with ordinality as p (part, ord)) w
       where w.word <> ''
    ), '{}')
  end
$$;

-- A choice word as the model spells it: trimmed, lower-cased (ASCII, and the Kelvin sign,
-- which Python lower-cases to k), `-` as `_`.
create or replace function mealworker_private.choice_word(p_word text)
returns text
language sql
immutable
set search_path = ''
as $$
  select pg_catalog.replace(
           pg_catalog.translate(
             pg_catalog.btrim(p_word, mealworker_private.ws_python()),
             E'ABCDEFGHIJKLMNOPQRSTUVWXYZ\u212a',
             'abcdefghijklmnopqrstuvwxyzk'),
           '-', '_')
$$;

create or replace function public.mealworker_request_problem(p_request jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_key text;
  v_items text[];
  v_item text;
  v_int numeric;
  v_total numeric := 0;
  v_allowed_keys text[] := array['days', 'meals', 'calories', 'macros', 'diet', 'allergies',
    'exclude', 'cuisines', 'household_size', 'max_cook_minutes', 'notes'];
  v_slots text[] := array['breakfast', 'lunch', 'dinner', 'snack'];
  v_diets text[] := array['omnivore', 'vegetarian', 'vegan', 'pescatarian', 'keto', 'paleo',
    'mediterranean', 'gluten_free', 'dairy_free'];
  -- The 14 families, then the aliases the model accepts.
  v_allergens text[] := array['gluten', 'crustaceans', 'eggs', 'fish', 'peanuts', 'soybeans',
    'milk', 'tree_nuts', 'celery', 'mustard', 'sesame', 'sulphites', 'lupin', 'molluscs',
    'wheat', 'cereals', 'shellfish', 'seafood', 'crustacean', 'egg', 'peanut', 'soy', 'soya',
    'dairy', 'lactose', 'nuts', 'nut', 'tree_nut', 'treenuts', 'sulfites', 'sulphite', 'sulfite',
    'mollusc', 'mollusks', 'mollusk'];
  v_bounds constant jsonb := '{"days": [1, 14], "calories": [1200, 5000],
    "household_size": [1, 12], "max_cook_minutes": [5, 480]}';
  v_macro_bounds constant jsonb := '{"protein": [5, 60], "carbs": [0, 80], "fat": [10, 80]}';
  v_lists constant jsonb := '{"meals": [1, 4], "diet": [0, 5], "allergies": [0, 14],
    "exclude": [0, 30], "cuisines": [0, 10]}';
begin
  if p_request is null or pg_catalog.jsonb_typeof(p_request) <> 'object' then
    return 'request: must be a JSON object';
  end if;
  for v_key in select k from pg_catalog.jsonb_object_keys(p_request) k order by k loop
    if not v_key = any(v_allowed_keys) then
      return pg_catalog.format('%s: unknown field', v_key);
    end if;
  end loop;

  for v_key in select k from pg_catalog.jsonb_object_keys(v_bounds) k order by k loop
    continue when not p_request ? v_key;
    continue when v_key = 'max_cook_minutes'
                  and pg_catalog.jsonb_typeof(p_request -> v_key) = 'null';
    v_int := mealworker_private.lax_int(p_request -> v_key);
    if v_int is null or v_int < (v_bounds -> v_key ->> 0)::numeric
       or v_int > (v_bounds -> v_key ->> 1)::numeric then
      return pg_catalog.format('%s: must be a whole number from %s to %s',
                               v_key, v_bounds -> v_key ->> 0, v_bounds -> v_key ->> 1);
    end if;
  end loop;

  if p_request ? 'notes' and (pg_catalog.jsonb_typeof(p_request -> 'notes') <> 'string'
      or pg_catalog.char_length(p_request ->> 'notes') > 500) then
    return 'notes: must be text of at most 500 characters';
  end if;

  for v_key in select k from pg_catalog.jsonb_object_keys(v_lists) k order by k loop
    continue when not p_request ? v_key;
    v_items := mealworker_private.list_items(p_request -> v_key);
    if v_items is null
       or pg_catalog.cardinality(v_items) < (v_lists -> v_key ->> 0)::int
       or pg_catalog.cardinality(v_items) > (v_lists -> v_key ->> 1)::int then
      return pg_catalog.format('%s: must be a list of %s to %s items (or comma-separated text)',
                               v_key, v_lists -> v_key ->> 0, v_lists -> v_key ->> 1);
    end if;
    foreach v_item in array v_items loop
      if v_item is null then
        return pg_catalog.format('%s: every item must be text', v_key);
      end if;
      if v_key in ('exclude', 'cuisines') then
        if pg_catalog.char_length(pg_catalog.btrim(v_item, mealworker_private.ws_pydantic()))
           not between 1 and 40 then
          return pg_catalog.format('%s: each item must be text of 1 to 40 characters', v_key);
        end if;
      elsif not mealworker_private.choice_word(v_item) = any(
                  case v_key when 'meals' then v_slots
                             when 'diet' then v_diets
                             else v_allergens end) then
        return pg_catalog.format('%s: unknown %s %s', v_key,
                                 case v_key when 'meals' then 'meal'
                                            when 'diet' then 'diet'
                                            else 'allergen family' end,
                                 pg_catalog.to_jsonb(v_item));
      end if;
    end loop;
  end loop;

  if p_request ? 'macros' and pg_catalog.jsonb_typeof(p_request -> 'macros') <> 'null' then
    if pg_catalog.jsonb_typeof(p_request -> 'macros') <> 'object'
       or exists (select 1 from pg_catalog.jsonb_object_keys(p_request -> 'macros') k
                   where not v_macro_bounds ? k)
       or not (p_request -> 'macros') ?& array['protein', 'carbs', 'fat'] then
      return 'macros: must be {"protein", "carbs", "fat"} in percent';
    end if;
    for v_key in select k from pg_catalog.jsonb_object_keys(v_macro_bounds) k loop
      v_int := mealworker_private.lax_int(p_request -> 'macros' -> v_key);
      if v_int is null or v_int < (v_macro_bounds -> v_key ->> 0)::numeric
         or v_int > (v_macro_bounds -> v_key ->> 1)::numeric then
        return pg_catalog.format('macros: %s must be a whole percentage from %s to %s', v_key,
                                 v_macro_bounds -> v_key ->> 0, v_macro_bounds -> v_key ->> 1);
      end if;
      v_total := v_total + v_int;
    end loop;
    if v_total <> 100 then
      return 'macros: protein + carbs + fat must sum to 100';
    end if;
  end if;
  return null;
end
$$;

revoke all on function mealworker_private.ws_pydantic(), mealworker_private.ws_python(),
  mealworker_private.lax_int(jsonb), mealworker_private.list_items(jsonb),
  mealworker_private.choice_word(text) from public;
grant execute on function mealworker_private.ws_pydantic(), mealworker_private.ws_python(),
  mealworker_private.lax_int(jsonb), mealworker_private.list_items(jsonb),
  mealworker_private.choice_word(text) to service_role;

-- ---------------------------------------------------------------------------------------------
-- 2. Idempotency keys without a user (the service role, `mealworker enqueue`): their own key
--    space. NULL users never collide in the unique constraint, so the key is serialised with
--    an advisory lock and looked up (a partial index, not a unique one: rows that the old
--    behaviour duplicated must not make this migration fail).
-- ---------------------------------------------------------------------------------------------
create index if not exists meal_plans_service_idempotency_key_idx
  on public.meal_plans (idempotency_key)
  where user_id is null and idempotency_key is not null;

create or replace function public.mealworker_enqueue_meal_plan(
  p_request jsonb,
  p_user_id uuid default null,
  p_priority int default 0,
  p_idempotency_key text default null,
  p_max_attempts int default 5
)
returns table (meal_plan_id uuid, job_id bigint, created boolean)
language plpgsql
volatile
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_plan_id uuid;
  v_job_id bigint;
begin
  if p_user_id is null and p_idempotency_key is not null then
    perform pg_catalog.pg_advisory_xact_lock(
      pg_catalog.hashtextextended('service:' || p_idempotency_key, 7420113));
    select mp.id into v_plan_id
      from public.meal_plans mp
     where mp.user_id is null and mp.idempotency_key = p_idempotency_key
     order by mp.created_at, mp.id
     limit 1;
    if v_plan_id is null then
      insert into public.meal_plans as mp (user_id, request, idempotency_key)
      values (null, p_request, p_idempotency_key)
      returning mp.id into v_plan_id;
      v_job_id := 0;  -- marks "created here"
    end if;
  else
    insert into public.meal_plans as mp (user_id, request, idempotency_key)
    values (p_user_id, p_request, p_idempotency_key)
    on conflict on constraint meal_plans_user_idempotency_key do nothing
    returning mp.id into v_plan_id;
    if v_plan_id is null then
      -- The key was used already (possibly by a transaction that committed just now: this
      -- statement takes a fresh snapshot under READ COMMITTED and sees it).
      select mp.id into v_plan_id
        from public.meal_plans mp
       where mp.user_id = p_user_id and mp.idempotency_key = p_idempotency_key;
    else
      v_job_id := 0;
    end if;
  end if;

  if v_job_id is null then
    select j.id into v_job_id
      from public.background_jobs j
     where j.meal_plan_id = v_plan_id
     order by j.id
     limit 1;
    return query select v_plan_id, v_job_id, false;
    return;
  end if;

  insert into public.background_jobs as j (job_type, payload, priority, max_attempts, meal_plan_id)
  values ('generate_meal_plan',
          pg_catalog.jsonb_build_object('meal_plan_id', v_plan_id, 'request', p_request),
          coalesce(p_priority, 0),
          coalesce(p_max_attempts, 5),
          v_plan_id)
  returning j.id into v_job_id;

  return query select v_plan_id, v_job_id, true;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- 3. Cancel, saying what it did per job: outcome is 'cancelled' (it was pending),
--    'cancel_requested' (processing: its worker stops it at the next heartbeat),
--    'already_requested', 'already_cancelled', or 'finished' (completed or failed: nothing to
--    cancel). Unknown ids return no row.
-- ---------------------------------------------------------------------------------------------
drop function if exists public.mealworker_cancel_jobs(bigint[]);
create function public.mealworker_cancel_jobs(p_job_ids bigint[])
returns table (job_id bigint, status text, previous_status text, outcome text)
language sql
volatile
set search_path = ''
as $$
  with before as (
    select j.id, j.status, j.cancel_requested
      from public.background_jobs j
     where j.id = any(p_job_ids)
     order by j.id
       for update
  ), changed as (
    update public.background_jobs j
       set status = case when j.status = 'pending' then 'cancelled' else j.status end,
           cancel_requested = case when j.status = 'processing' then true
                                   else j.cancel_requested end,
           finished_at = case when j.status = 'pending' then now() else j.finished_at end,
           updated_at = now()
      from before b
     where j.id = b.id
       and (b.status = 'pending' or (b.status = 'processing' and not b.cancel_requested))
    returning j.id, j.status, j.meal_plan_id
  ), plans as (
    update public.meal_plans mp
       set status = 'cancelled', updated_at = now()
     where mp.id = any(array(select c.meal_plan_id from changed c where c.status = 'cancelled'))
    returning mp.id
  )
  select b.id,
         coalesce(c.status, b.status),
         b.status,
         case when b.status = 'pending' then 'cancelled'
              when b.status = 'processing' and not b.cancel_requested then 'cancel_requested'
              when b.status = 'processing' then 'already_requested'
              when b.status = 'cancelled' then 'already_cancelled'
              else 'finished' end
    from before b
    left join changed c on c.id = b.id
   order by b.id;
$$;

revoke all on function public.mealworker_cancel_jobs(bigint[]) from public, anon, authenticated;
grant execute on function public.mealworker_cancel_jobs(bigint[]) to service_role;

-- ---------------------------------------------------------------------------------------------
-- 4. The job of a meal plan (`run-job <meal plan id>`): its newest generation job.
-- ---------------------------------------------------------------------------------------------
create or replace function public.mealworker_job_for_meal_plan(p_meal_plan_id uuid)
returns bigint
language sql
stable
set search_path = ''
as $$
  select j.id
    from public.background_jobs j
   where j.meal_plan_id = p_meal_plan_id
   order by j.id desc
   limit 1;
$$;

revoke all on function public.mealworker_job_for_meal_plan(uuid) from public, anon, authenticated;
grant execute on function public.mealworker_job_for_meal_plan(uuid) to service_role;

-- ---------------------------------------------------------------------------------------------
-- 5. Stats: "OpenAI, 24h" counts only the plans that called OpenAI (usage.calls > 0); every
--    completed plan is counted in plans_24h. Otherwise the 20240103 function, unchanged.
-- ---------------------------------------------------------------------------------------------
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
  ), completed_plans as (
    select mp.usage
      from public.meal_plans mp
     where mp.status = 'completed' and mp.completed_at > now() - interval '24 hours'
  ), openai as (
    select count(*) as n,
           coalesce(sum((p.usage ->> 'input_tokens')::bigint), 0) as input_tokens,
           coalesce(sum((p.usage ->> 'output_tokens')::bigint), 0) as output_tokens,
           coalesce(sum((p.usage ->> 'cost_usd')::numeric), 0) as cost_usd
      from completed_plans p
     where coalesce((p.usage ->> 'calls')::int, 0) > 0
        or coalesce((p.usage ->> 'input_tokens')::bigint, 0) > 0
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
    'plans_24h', (select count(*) from completed_plans),
    'openai_24h', (
      select jsonb_build_object(
        'plans', o.n, 'input_tokens', o.input_tokens, 'output_tokens', o.output_tokens,
        'cost_usd', o.cost_usd,
        'cost_per_plan_usd', case when o.n > 0 then round(o.cost_usd / o.n, 6) end)
        from openai o
    )
  )
$$;

revoke all on function public.mealworker_queue_stats() from public, anon, authenticated;
grant execute on function public.mealworker_queue_stats() to service_role;

-- ---------------------------------------------------------------------------------------------
-- 6. meal_plans.user_id -> auth.users(id) on delete cascade, where auth.users exists
--    (Supabase; not the plain PostgreSQL of the embedded server or CI). Plans whose user is
--    already gone are KEPT: the constraint is added NOT VALID (enforced for new and changed
--    rows, and deleting a user deletes their plans), then validated when no such plan exists.
--    With orphans it stays NOT VALID and a notice says how many; `mealworker doctor`-style
--    check: select count(*) from meal_plans p where user_id is not null and not exists
--    (select 1 from auth.users u where u.id = p.user_id). Delete or keep them, then
--    `alter table public.meal_plans validate constraint meal_plans_user_id_fkey`.
-- ---------------------------------------------------------------------------------------------
do $$
declare
  v_orphans bigint;
begin
  if pg_catalog.to_regclass('auth.users') is null
     or exists (select 1 from pg_catalog.pg_constraint
                 where conname = 'meal_plans_user_id_fkey'
                   and conrelid = 'public.meal_plans'::regclass) then
    return;
  end if;
  alter table public.meal_plans
    add constraint meal_plans_user_id_fkey foreign key (user_id)
    references auth.users (id) on delete cascade not valid;
  select count(*) into v_orphans
    from public.meal_plans p
   where p.user_id is not null
     and not exists (select 1 from auth.users u where u.id = p.user_id);
  if v_orphans = 0 then
    alter table public.meal_plans validate constraint meal_plans_user_id_fkey;
  else
    raise notice 'meal_plans_user_id_fkey left NOT VALID: % meal plans belong to deleted users '
                 '(kept; delete them, then validate the constraint)', v_orphans;
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- 7. request_meal_plan: also refuses anonymous sign-ins (JWT claim is_anonymous) unless
--    `mealworker.allow_anonymous` is on, caps the plans a user requests per rolling 24 hours
--    (`mealworker.max_plans_per_day`, default 20; cancelled plans count, so request-then-cancel
--    cannot run up OpenAI costs), and refuses a request body over 64 KB before validating it.
--    Settings: alter database postgres set mealworker.max_plans_per_day = 50;
--              alter database postgres set mealworker.allow_anonymous = on;
-- ---------------------------------------------------------------------------------------------
create or replace function public.request_meal_plan(request jsonb, idempotency_key text default null)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
  v_problem text;
  v_existing uuid;
  v_count int;
  v_limit int := coalesce(
    nullif(pg_catalog.current_setting('mealworker.max_plans_in_flight', true), '')::int, 3);
  v_daily int := coalesce(
    nullif(pg_catalog.current_setting('mealworker.max_plans_per_day', true), '')::int, 20);
  v_plan uuid;
begin
  if v_user is null then
    raise exception 'sign in to request a meal plan' using errcode = '42501';
  end if;
  if v_claims ->> 'is_anonymous' = 'true'
     and coalesce(nullif(pg_catalog.current_setting('mealworker.allow_anonymous', true), '')
                  ::boolean, false) is false then
    raise exception 'anonymous users cannot request meal plans: sign in with an account'
      using errcode = '42501',
            hint = 'to allow anonymous sign-ins: alter database postgres set mealworker.allow_anonymous = on';
  end if;
  if pg_catalog.octet_length(request::text) > 65536 then
    raise exception 'invalid meal-plan request: request: larger than 64 KB' using errcode = '22023';
  end if;
  v_problem := public.mealworker_request_problem(request);
  if v_problem is not null then
    raise exception 'invalid meal-plan request: %', v_problem
      using errcode = '22023', hint = 'see the request fields in the mealworker README';
  end if;
  -- One request per user at a time, so that the counts below cannot be raced.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(v_user::text, 7420113));
  if idempotency_key is not null then
    select mp.id into v_existing
      from public.meal_plans mp
     where mp.user_id = v_user and mp.idempotency_key = request_meal_plan.idempotency_key;
    if v_existing is not null then
      return v_existing;
    end if;
  end if;
  select count(*) into v_count
    from public.meal_plans mp
   where mp.user_id = v_user and mp.created_at > now() - interval '24 hours';
  if v_count >= v_daily then
    raise exception 'too many meal plans requested today (% of % in 24 hours)', v_count, v_daily
      using errcode = 'PT429', hint = 'try again tomorrow';
  end if;
  select count(*) into v_count
    from public.meal_plans mp
   where mp.user_id = v_user and mp.status in ('pending', 'generating');
  if v_count >= v_limit then
    raise exception 'too many meal plans in progress (% of %)', v_count, v_limit
      using errcode = 'PT429', hint = 'wait for one to finish, or cancel one';
  end if;
  select e.meal_plan_id into v_plan
    from public.mealworker_enqueue_meal_plan(
      p_request => request, p_user_id => v_user, p_idempotency_key => idempotency_key) e;
  return v_plan;
end
$$;

revoke all on function public.request_meal_plan(jsonb, text) from public, anon;
grant execute on function public.request_meal_plan(jsonb, text) to authenticated;

notify pgrst, 'reload schema';
