-- mealworker: a space in a choice word reads as `_`, in the database as in the worker.
--
-- The worker read an allergy written with a space ("tree nuts", "tree nut") as its family
-- (`tree_nuts`), while `mealworker_request_problem` refused it as an unknown allergen family:
-- an app's request was refused for a spelling the worker and `mealworker generate` accepted.
-- Both now read a space inside a meal, diet or allergy word as `_`, as they already read `-`:
-- "gluten free", "Gluten-Free" and "gluten_free" are one diet. Only the ASCII space, and only
-- inside the word (the ends are trimmed first); any other character still makes the word
-- unknown, and an unknown word is refused. `create or replace` keeps the function's grants.

create or replace function mealworker_private.choice_word(p_word text)
returns text
language sql
immutable
set search_path = ''
as $$
  select pg_catalog.translate(
           pg_catalog.translate(
             pg_catalog.btrim(p_word, mealworker_private.ws_python()),
             E'ABCDEFGHIJKLMNOPQRSTUVWXYZ\u212a',
             'abcdefghijklmnopqrstuvwxyzk'),
           '- ', '__')
$$;
