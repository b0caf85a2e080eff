"""The ``Database`` interface every transport implements (its errors live in ``errors``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from mealplan_cli.ops.errors import DatabaseError, DatabaseUnavailableError, SchemaMissingError

Row = dict[str, Any]

__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseUnavailableError",
    "Row",
    "SchemaMissingError",
]


class Database(Protocol):
    """Calls SQL functions by name; optionally listens for NOTIFY wake-ups."""

    transport: str
    """"postgres", "embedded" or "rest"; shown to operators."""

    supports_listen: bool

    async def call(self, function: str, **params: Any) -> list[Row]:
        """Rows returned by ``public.<function>(name => value, ...)``.

        A function returning a scalar gives one row ``{function: value}``; ``void`` gives one
        row whose value is None; a set or table gives one row per element.
        """
        ...

    async def value(self, function: str, **params: Any) -> Any:
        """The single value ``public.<function>(...)`` returns (a scalar, json, or None for
        ``void``), for functions that return one value rather than rows."""
        ...

    async def listen(self, channel: str, on_notify: Callable[[str], None]) -> None:
        """Call ``on_notify(payload)`` for each notification on ``channel`` until cancelled,
        reconnecting as needed (and calling ``on_notify("")`` after each reconnection)."""
        ...

    async def close(self) -> None: ...
