"""SIGTERM and SIGINT for a process that runs a worker: exit 0 at any moment.

Installed before anything slow is imported (``mealplan_cli.cli`` does it first thing), so a
signal during imports or start-up ends the process with exit 0 instead of killing it by the
signal. Once a worker runs, the first signal stops it gracefully and the second exits at once
(the leases then expire and the jobs are rescued). Standard library only, on purpose.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _announce(message: str) -> None:
    """Through the worker's logging once it is set up (its format, its files), else stderr."""
    logger = logging.getLogger("mealworker.worker")
    if logging.getLogger("mealworker").handlers:
        logger.warning(message)
        return
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class StopSignals:
    """First signal: stop the attached worker gracefully, or exit 0 when none is attached;
    second signal: exit at once."""

    def __init__(self, announce: Callable[[str], None] = _announce) -> None:
        self.announce = announce
        self.received = 0
        self._target: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None

    def install(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in signals:
                signal.signal(signum, self._handle)
        return self

    @contextmanager
    def stopping(self, stop: Callable[[], None]) -> Iterator[None]:
        """While inside, a signal calls ``stop()`` (from a running event loop)."""
        import asyncio

        loop = asyncio.get_running_loop()
        self.install()
        self._target = (loop, stop)
        if self.received:  # a signal came during start-up: stop at once
            loop.call_soon(stop)
        try:
            yield
        finally:
            self._target = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received > 1:
            self.announce("second signal: exiting now; unfinished jobs return when leases expire")
            os._exit(1)
        if self._target is None:
            if logging.getLogger("mealworker").handlers:  # a worker starting: say why it ends
                self.announce(f"{name}: exiting; no job is held")
            # Nothing is held yet (no worker runs, so no lease): leave at once. Raising
            # SystemExit here instead would surface wherever the signal lands, and inside a C
            # extension (pydantic building a schema) it turns into that library's error.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(0)
        loop, stop = self._target
        self.announce(f"{name}: finishing running jobs, then stopping")
        loop.call_soon_threadsafe(stop)


STOP = StopSignals()
"""The process's handler (one per process: signals are process-wide)."""
