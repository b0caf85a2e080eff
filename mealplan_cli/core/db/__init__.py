"""How mealworker reaches its database: one small interface, several transports.

A ``Database`` calls the SQL functions of ``supabase/migrations`` by name; it never composes
queue SQL of its own, so every transport has exactly the same semantics. ``open_database``
picks the transport from the settings: ``DATABASE_URL`` (psycopg), else ``SUPABASE_URL`` with
the service role key (PostgREST), else an embedded PostgreSQL in ``MEALWORKER_DATA_DIR``.
"""

from mealplan_cli.core.db.base import (
    Database,
    DatabaseError,
    DatabaseUnavailableError,
    SchemaMissingError,
)

__all__ = ["Database", "DatabaseError", "DatabaseUnavailableError", "SchemaMissingError"]
