"""Loopback fakes of the outside services, and the small HTTP harness they share.

Each fake is a real HTTP server on 127.0.0.1 (ephemeral port) in a daemon thread, so the real
clients (``openai.AsyncOpenAI``, ``httpx``) drive it over a socket, exactly as in production:
``FakeOpenAI`` in ``tests.fakes.openai_server``, ``FakeUnsplash`` in
``tests.fakes.unsplash_server``.

The harness keeps the fakes free of socket plumbing: a fake maps an ``Incoming`` request to a
``Reply`` (or ``None`` to drop the connection). Every wait a fake makes goes through
``LoopbackServer.pause`` so that ``stop()`` returns at once even while a handler is simulating a
hung upstream.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FaultQueue", "Incoming", "LoopbackServer", "Reply"]

T = TypeVar("T")


@dataclass(frozen=True)
class Incoming:
    """One HTTP request as a fake sees it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """What a fake answers; the harness adds Content-Length and writes it out."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(payload).encode(), "application/json", dict(headers or {}))

    @classmethod
    def text(
        cls,
        status: int,
        text: str,
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return cls(status, text.encode(), f"{content_type}; charset=utf-8", dict(headers or {}))


class FaultQueue(Generic[T]):
    """Faults waiting for the next requests, first in first out, shared across handler threads."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._lock = threading.Lock()

    def push(self, item: T, times: int = 1) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._items.extend([item] * times)

    def pop(self) -> T | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def pending(self) -> list[T]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class _Server(ThreadingHTTPServer):
    # Handler threads may sit on a keep-alive connection or in a simulated hang; joining them
    # on close would let one slow test client hold up stop().
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        app: Callable[[Incoming], Reply | None],
        stopping: threading.Event,
        errors: list[BaseException],
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.stopping = stopping
        self.errors = errors

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep disconnects quiet: tests make clients time out and hang up on purpose."""
        if not isinstance(sys.exception(), OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log line; tests inspect the fakes' records instead."""

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        incoming = Incoming(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        try:
            reply = self.server.app(incoming)
        except Exception as error:
            self.server.errors.append(error)
            traceback.print_exception(error)
            reply = Reply.json(500, {"error": {"message": f"fake server bug: {error!r}"}})
        if reply is None or self.server.stopping.is_set():
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)


class LoopbackServer:
    """Base of the fakes: lifecycle, interruptible waits, and the bugs a fake hit while serving.

    Subclasses implement ``handle``. ``errors`` collects exceptions raised inside the fake (a
    responder that blew up, a bug in the fake) that the client only saw as a 500.
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def handle(self, request: Incoming) -> Reply | None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        self._server = _Server(self.handle, self._stopping, self.errors)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes handlers that are sleeping, and drops their connections."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def pause(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False means stop() came, so answer nothing."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
