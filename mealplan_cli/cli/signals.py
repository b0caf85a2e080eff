"""SIGTERM and SIGINT for a long-running command, installed for its duration only."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mealplan_cli.cli.app import stderr

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def graceful_stop(stop: Callable[[], None]) -> Iterator[None]:
    """First signal: ``stop()``, gracefully; second: exit at once (the leases then expire)."""
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def handle(signum: int) -> None:
        if received:
            stderr.print("second signal: exiting now; unfinished jobs return when leases expire")
            os._exit(1)
        received.append(signum)
        stderr.print(f"{signal.Signals(signum).name}: finishing running jobs, then stopping")
        stop()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, handle, signum)
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
