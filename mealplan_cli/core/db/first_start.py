"""What a command shows while the embedded database is created: its first start runs initdb
and takes half a minute, which is silence enough to look like a hang.

The library does not draw (no rich here); the CLI installs a notice, a context manager that
shows a spinner with a sentence for as long as the start lasts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

Notice = Callable[[Path], AbstractContextManager[object]]

_notice: Notice | None = None


def install(notice: Notice | None) -> None:
    """Show ``notice(data_dir)`` around every first start of an embedded database."""
    global _notice
    _notice = notice


def is_new(data_dir: Path) -> bool:
    """Whether the embedded database in ``data_dir`` was never created (initdb has not run)."""
    return not (data_dir / "pgdata" / "PG_VERSION").is_file()


@contextmanager
def announced(data_dir: Path) -> Iterator[None]:
    """The installed notice around a start that creates the database; nothing otherwise."""
    if _notice is None or not is_new(data_dir):
        yield
        return
    with _notice(data_dir):
        yield
