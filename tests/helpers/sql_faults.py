"""Outages of single SQL functions in a real, migrated test database.

``SqlFaults(url).install("mealworker_complete_jobs")`` puts a wrapper in the function's place
(the original is renamed ``<name>__real``; same arguments, same result) that counts its calls
and, while a fault budget lasts, fails before doing anything with SQLSTATE 57P03 ("the
database system is starting up"): the worker gets the ``DatabaseUnavailableError`` a restarting
server gives it, through the real driver and transport. Functions that call the wrapped one
(``mealworker_claim_next`` completes through ``mealworker_complete_jobs``) fail with it, as one
transaction would. Counters are sequences, so a failed call still counts.
"""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMA = "mealworker_test_faults"


class SqlFaults:
    def __init__(self, url: str) -> None:
        self.url = url
        self._execute(
            f"create schema if not exists {SCHEMA};"
            f" create table if not exists {SCHEMA}.budget"
            " (function text primary key, fail_through bigint not null default 0)"
        )

    def _execute(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement.encode(), params or None)
            return cursor.fetchall() if cursor.description else []

    def install(self, function: str) -> None:
        """Put the wrapper in place, once per database (a second call finds it there)."""
        if self._execute(
            "select 1 from pg_proc where pronamespace = 'public'::regnamespace and proname = %s",
            f"{function}__real",
        ):
            return
        ((arguments, call_arguments, result, returns_set),) = self._execute(
            "select pg_get_function_arguments(p.oid),"
            "       (select string_agg(format('%%1$I => %%1$I', n), ', ')"
            "          from unnest(p.proargnames[1:p.pronargs]) n),"
            "       pg_get_function_result(p.oid), p.proretset"
            "  from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname = %s",
            function,
        )
        real = f"public.{function}__real({call_arguments or ''})"
        if returns_set:
            body = f"return query select * from {real};"
        elif result == "void":
            body = f"perform {real};"
        else:
            body = f"return {real};"
        counter = f"{SCHEMA}.calls_{function}"
        self._execute(
            f"alter function public.{function} rename to {function}__real;"
            f" create sequence {counter};"
            f" insert into {SCHEMA}.budget (function) values ('{function}');"
            f" create function public.{function}({arguments}) returns {result}"
            " language plpgsql volatile set search_path = '' as $wrapper$"
            " begin"
            f"   if pg_catalog.nextval('{counter}') <= (select b.fail_through"
            f"        from {SCHEMA}.budget b where b.function = '{function}') then"
            f"     raise exception 'injected outage of {function}' using errcode = '57P03';"
            "   end if;"
            f"   {body}"
            " end $wrapper$"
        )

    def fail(self, function: str, times: int) -> None:
        """The next ``times`` calls of ``function`` fail as an unavailable database would."""
        self.install(function)
        self._execute(
            f"update {SCHEMA}.budget set fail_through = %s + %s where function = %s",
            self.calls(function),
            times,
            function,
        )

    def calls(self, function: str) -> int:
        """How many times ``function`` was called since it was installed, failed calls too."""
        self.install(function)
        ((called,),) = self._execute(
            f"select case when is_called then last_value else 0 end from {SCHEMA}.calls_{function}"
        )
        return int(called)
