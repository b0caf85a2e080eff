"""A connection that cannot open says why at once, in one line, with what to do.

Wrong password needs a server that asks for one, and the test server trusts everyone: a small
loopback server speaking PostgreSQL's start-up protocol refuses the password the way
PostgreSQL does (ErrorResponse 28P01). A server that accepts and never answers gives the timeout.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from mealplan_cli.cli import app
from tests.helpers import pg

runner = CliRunner()
PASSWORD = "Wr0ng-pass-77"
FAST = 5.0
"""The issue's bound: the cause within 5 s (the old pool retried for 15 s in silence)."""


class StartupServer:
    """Accepts connections on loopback; ``refuse`` answers like PostgreSQL with a wrong
    password, otherwise it never answers at all."""

    def __init__(self, *, refuse: bool) -> None:
        self.refuse = refuse
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.refuse:
                threading.Thread(target=self._refuse, args=(conn,), daemon=True).start()

    @staticmethod
    def _refuse(conn: socket.socket) -> None:
        try:
            while True:
                length, code = struct.unpack("!ii", conn.recv(8))
                rest = conn.recv(length - 8) if length > 8 else b""
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                    conn.sendall(b"N")
                    continue
                user = rest.split(b"user\0", 1)[1].split(b"\0", 1)[0].decode()
                break
            conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # cleartext password, please
            conn.recv(1024)
            fields = (
                b"SFATAL\0VFATAL\0C28P01\0"
                + f'Mpassword authentication failed for user "{user}"\0'.encode()
                + b"\0"
            )
            conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
        except (OSError, struct.error, IndexError):
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def refusing() -> Iterator[StartupServer]:
    server = StartupServer(refuse=True)
    yield server
    server.close()


@pytest.fixture
def silent() -> Iterator[StartupServer]:
    server = StartupServer(refuse=False)
    yield server
    server.close()


def failing(env: dict[str, str], *command: str) -> tuple[str, float]:
    started = time.monotonic()
    result = runner.invoke(app, list(command), env=env)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert result.stdout == "" or command[0] == "doctor"
    assert PASSWORD not in result.output
    assert "Traceback" not in result.output
    return result.stderr.strip(), elapsed


@pytest.mark.parametrize("command", [["stats"], ["tail"], ["migrate"], ["cancel", "1"]])
def test_a_wrong_password_says_so_at_once(refusing: StartupServer, command: list[str]) -> None:
    url = f"postgresql://app_user:{PASSWORD}@127.0.0.1:{refusing.port}/postgres"
    error, elapsed = failing({"DATABASE_URL": url}, *command)
    assert 'password authentication failed for user "app_user"' in error
    assert "check the user and password in DATABASE_URL" in error
    assert "\n" not in error
    assert elapsed < FAST


def test_a_refused_port_says_so_at_once() -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/postgres"
    error, elapsed = failing({"DATABASE_URL": url}, "stats")
    assert "Connection refused" in error
    assert "check the host and port" in error
    assert "\n" not in error
    assert elapsed < FAST


def test_an_unknown_database_says_so_at_once(database_url: str) -> None:
    url = pg.with_database(database_url, "no_such_database")
    error, elapsed = failing({"DATABASE_URL": url}, "stats", "--json")
    assert 'database "no_such_database" does not exist' in error
    assert "check the database name" in error
    assert elapsed < FAST


def test_an_unknown_database_in_key_value_form_names_the_dbname_key(database_url: str) -> None:
    dsn = make_conninfo(database_url, dbname="no_such_database", password=PASSWORD)
    error, _ = failing({"DATABASE_URL": dsn}, "stats", "--json")
    assert 'database "no_such_database" does not exist' in error
    assert "or dbname=;" in error  # the hint, not the echoed connection string
    assert PASSWORD not in error


def test_an_unknown_host_says_so_at_once() -> None:
    url = f"postgresql://postgres:{PASSWORD}@no-such-host.invalid:5432/postgres"
    error, elapsed = failing({"DATABASE_URL": url}, "requeue", "--stale")
    assert "no-such-host.invalid" in error
    assert "check the host name in DATABASE_URL" in error
    assert elapsed < FAST


@pytest.mark.slow
def test_a_server_that_never_answers_times_out_as_set(silent: StartupServer) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{silent.port}/postgres"
    env = {"DATABASE_URL": url, "DATABASE_CONNECT_TIMEOUT_SECONDS": "2"}
    error, elapsed = failing(env, "stats")
    assert "timed out after 2s" in error
    assert "check the host, the port and any firewall" in error
    assert elapsed < FAST + 2


def test_a_malformed_url_is_a_configuration_error_naming_the_forms() -> None:
    error, _ = failing({"DATABASE_URL": f"postgres:{PASSWORD}@db.example/postgres"}, "stats")
    assert "invalid setting DATABASE_URL (from environment): not a valid connection string" in error
    assert "postgresql://USER@HOST:5432/DATABASE with :PASSWORD after USER" in error
    assert "host=... user=... password=... dbname=..." in error
    assert PASSWORD not in error


def test_doctor_does_not_claim_listen_works_without_a_database() -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/postgres"
    result = runner.invoke(app, ["doctor"], env={"DATABASE_URL": url})
    assert result.exit_code == 1
    assert "fail  database: cannot connect" in result.stdout
    assert "ok  wake-ups" not in result.stdout
    assert "warn  wake-ups: not checked" in result.stdout


def test_doctor_hears_its_own_notify(database_url: str) -> None:
    result = runner.invoke(app, ["doctor"], env={"DATABASE_URL": database_url})
    assert "ok  wake-ups: LISTEN/NOTIFY answered" in result.stdout


@pytest.mark.parametrize("target", ["/no/such/dir/x.json", "/proc/version"])
def test_generate_out_to_an_impossible_place_is_one_line(target: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--days", "1", "--out", target])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert f"--out {target}" in errors[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)
