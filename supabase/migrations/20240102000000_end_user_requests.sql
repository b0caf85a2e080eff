-- End users: request a meal plan and cancel it from the app (supabase-js, with the user's JWT),
-- read their own plans (RLS, first migration), and subscribe to them with Supabase Realtime.
--
-- request_meal_plan and cancel_meal_plan are security definer because a user may not touch
-- background_jobs; they act only for auth.uid(), and only authenticated may execute them.

-- ---------------------------------------------------------------------------------------------
-- Validation: the bounds of mealplan_cli.generation.models.MealPlanRequest, so a malformed
-- request is refused at once with a message naming the field, before any job exists.
-- ---------------------------------------------------------------------------------------------
create or replace function public.mealworker_request_problem(p_request jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_key text;
  v_item jsonb;
  v_allowed_keys text[] := array['days', 'meals', 'calories', 'macros', 'diet', 'allergies',
    'exclude', 'cuisines', 'household_size', 'max_cook_minutes', 'notes'];
  v_slots text[] := array['breakfast', 'lunch', 'dinner', 'snack'];
  v_diets text[] := array['omnivore', 'vegetarian', 'vegan', 'pescatarian', 'keto', 'paleo',
    'mediterranean', 'gluten_free', 'dairy_free'];
  v_allergens text[] := array['gluten', 'crustaceans', 'eggs', 'fish', 'peanuts', 'soybeans',
    'milk', 'tree_nuts', 'celery', 'mustard', 'sesame', 'sulphites', 'lupin', 'molluscs'];
begin
  if p_request is null or jsonb_typeof(p_request) <> 'object' then
    return 'request: must be a JSON object';
  end if;
  if octet_length(p_request::text) > 8192 then
    return 'request: larger than 8 KB';
  end if;
  for v_key in select jsonb_object_keys(p_request) loop
    if not v_key = any(v_allowed_keys) then
      return format('%s: unknown field', v_key);
    end if;
  end loop;

  if p_request ? 'days' and (jsonb_typeof(p_request->'days') <> 'number'
      or (p_request->>'days')::numeric not between 1 and 14
      or (p_request->>'days')::numeric <> trunc((p_request->>'days')::numeric)) then
    return 'days: must be a whole number from 1 to 14';
  end if;
  if p_request ? 'calories' and (jsonb_typeof(p_request->'calories') <> 'number'
      or (p_request->>'calories')::numeric not between 1200 and 5000) then
    return 'calories: must be a number from 1200 to 5000';
  end if;
  if p_request ? 'household_size' and (jsonb_typeof(p_request->'household_size') <> 'number'
      or (p_request->>'household_size')::numeric not between 1 and 12) then
    return 'household_size: must be a number from 1 to 12';
  end if;
  if p_request ? 'max_cook_minutes' and jsonb_typeof(p_request->'max_cook_minutes') <> 'null'
     and (jsonb_typeof(p_request->'max_cook_minutes') <> 'number'
      or (p_request->>'max_cook_minutes')::numeric not between 5 and 480) then
    return 'max_cook_minutes: must be a number from 5 to 480';
  end if;
  if p_request ? 'notes' and (jsonb_typeof(p_request->'notes') <> 'string'
      or char_length(p_request->>'notes') > 500) then
    return 'notes: must be text of at most 500 characters';
  end if;

  if p_request ? 'meals' then
    if jsonb_typeof(p_request->'meals') <> 'array'
       or jsonb_array_length(p_request->'meals') not between 1 and 4 then
      return 'meals: must be a list of 1 to 4 of breakfast, lunch, dinner, snack';
    end if;
    for v_item in select jsonb_array_elements(p_request->'meals') loop
      if jsonb_typeof(v_item) <> 'string' or not (v_item #>> '{}') = any(v_slots) then
        return format('meals: unknown meal %s', v_item);
      end if;
    end loop;
  end if;
  if p_request ? 'diet' then
    if jsonb_typeof(p_request->'diet') <> 'array' or jsonb_array_length(p_request->'diet') > 5 then
      return 'diet: must be a list of at most 5 diets';
    end if;
    for v_item in select jsonb_array_elements(p_request->'diet') loop
      if jsonb_typeof(v_item) <> 'string' or not (v_item #>> '{}') = any(v_diets) then
        return format('diet: unknown diet %s', v_item);
      end if;
    end loop;
  end if;
  if p_request ? 'allergies' then
    if jsonb_typeof(p_request->'allergies') <> 'array' then
      return 'allergies: must be a list of allergen families';
    end if;
    for v_item in select jsonb_array_elements(p_request->'allergies') loop
      if jsonb_typeof(v_item) <> 'string' or not (v_item #>> '{}') = any(v_allergens) then
        return format('allergies: unknown allergen family %s', v_item);
      end if;
    end loop;
  end if;
  if p_request ? 'exclude' then
    if jsonb_typeof(p_request->'exclude') <> 'array'
       or jsonb_array_length(p_request->'exclude') > 30 then
      return 'exclude: must be a list of at most 30 ingredients';
    end if;
    for v_item in select jsonb_array_elements(p_request->'exclude') loop
      if jsonb_typeof(v_item) <> 'string' or char_length(v_item #>> '{}') not between 1 and 40 then
        return 'exclude: each ingredient must be text of 1 to 40 characters';
      end if;
    end loop;
  end if;
  if p_request ? 'cuisines' then
    if jsonb_typeof(p_request->'cuisines') <> 'array'
       or jsonb_array_length(p_request->'cuisines') > 10 then
      return 'cuisines: must be a list of at most 10 cuisines';
    end if;
    for v_item in select jsonb_array_elements(p_request->'cuisines') loop
      if jsonb_typeof(v_item) <> 'string' or char_length(v_item #>> '{}') not between 1 and 40 then
        return 'cuisines: each cuisine must be text of 1 to 40 characters';
      end if;
    end loop;
  end if;
  if p_request ? 'macros' and jsonb_typeof(p_request->'macros') <> 'null' then
    if jsonb_typeof(p_request->'macros') <> 'object'
       or jsonb_typeof(p_request->'macros'->'protein') <> 'number'
       or jsonb_typeof(p_request->'macros'->'carbs') <> 'number'
       or jsonb_typeof(p_request->'macros'->'fat') <> 'number' then
      return 'macros: must be {"protein", "carbs", "fat"} in percent';
    end if;
    if (p_request->'macros'->>'protein')::numeric + (p_request->'macros'->>'carbs')::numeric
       + (p_request->'macros'->>'fat')::numeric <> 100 then
      return 'macros: protein + carbs + fat must sum to 100';
    end if;
  end if;
  return null;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- request_meal_plan: the app's one call. Returns the new (or, for a retried idempotency key,
-- the existing) meal plan's id. A user may have at most `mealworker.max_plans_in_flight`
-- (default 3; `alter database postgres set mealworker.max_plans_in_flight = 5`) plans pending
-- or generating at once.
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
  v_problem text;
  v_existing uuid;
  v_in_flight int;
  v_limit int := coalesce(
    nullif(pg_catalog.current_setting('mealworker.max_plans_in_flight', true), '')::int, 3);
  v_plan uuid;
begin
  if v_user is null then
    raise exception 'sign in to request a meal plan' using errcode = '42501';
  end if;
  v_problem := public.mealworker_request_problem(request);
  if v_problem is not null then
    raise exception 'invalid meal-plan request: %', v_problem
      using errcode = '22023', hint = 'see the request fields in the mealworker README';
  end if;
  -- One request per user at a time, so that the in-flight count below cannot be raced.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(v_user::text, 7420113));
  if idempotency_key is not null then
    select mp.id into v_existing
      from public.meal_plans mp
     where mp.user_id = v_user and mp.idempotency_key = request_meal_plan.idempotency_key;
    if v_existing is not null then
      return v_existing;
    end if;
  end if;
  select count(*) into v_in_flight
    from public.meal_plans mp
   where mp.user_id = v_user and mp.status in ('pending', 'generating');
  if v_in_flight >= v_limit then
    raise exception 'too many meal plans in progress (% of %)', v_in_flight, v_limit
      using errcode = 'PT429', hint = 'wait for one to finish, or cancel one';
  end if;
  select e.meal_plan_id into v_plan
    from public.mealworker_enqueue_meal_plan(
      p_request => request, p_user_id => v_user, p_idempotency_key => idempotency_key) e;
  return v_plan;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- cancel_meal_plan: the owner stops a plan. A pending one is cancelled at once; a generating
-- one when its worker next checks in. Returns the plan's status after the call.
-- ---------------------------------------------------------------------------------------------
create or replace function public.cancel_meal_plan(meal_plan_id uuid)
returns text
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_status text;
  v_jobs bigint[];
begin
  if v_user is null then
    raise exception 'sign in to cancel a meal plan' using errcode = '42501';
  end if;
  select mp.status into v_status
    from public.meal_plans mp
   where mp.id = cancel_meal_plan.meal_plan_id and mp.user_id = v_user;
  if v_status is null then
    raise exception 'no such meal plan' using errcode = 'PT404';
  end if;
  if v_status not in ('pending', 'generating') then
    return v_status;
  end if;
  select array_agg(j.id) into v_jobs
    from public.background_jobs j
   where j.meal_plan_id = cancel_meal_plan.meal_plan_id;
  perform public.mealworker_cancel_jobs(p_job_ids => v_jobs);
  select mp.status into v_status from public.meal_plans mp where mp.id = cancel_meal_plan.meal_plan_id;
  return v_status;
end
$$;

revoke all on function public.mealworker_request_problem(jsonb) from public, anon, authenticated;
grant execute on function public.mealworker_request_problem(jsonb) to service_role;
revoke all on function public.request_meal_plan(jsonb, text) from public, anon;
grant execute on function public.request_meal_plan(jsonb, text) to authenticated;
revoke all on function public.cancel_meal_plan(uuid) from public, anon;
grant execute on function public.cancel_meal_plan(uuid) to authenticated;

-- Realtime: an app may subscribe to its meal_plans row instead of polling (RLS still applies).
do $$
begin
  if exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime')
     and not exists (
       select 1 from pg_catalog.pg_publication_tables
        where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'meal_plans'
     ) then
    alter publication supabase_realtime add table public.meal_plans;
  end if;
end
$$;

notify pgrst, 'reload schema';
