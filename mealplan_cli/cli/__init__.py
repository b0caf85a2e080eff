"""The ``mealworker`` command: one thin function per command, grouped in modules."""

import signal

from mealplan_cli.core.signals import STOP

STOP.install()  # first, before anything slow: a SIGTERM while importing exits 0

from mealplan_cli.cli import (  # noqa: E402, F401  (importing a module registers its commands)
    db_commands,
    demo,
    doctor,
    enqueue,
    generate,
    prune,
    requeue,
    stats,
    tail,
    worker_commands,
)
from mealplan_cli.cli.app import app  # noqa: E402

if STOP.received == 0:  # Ctrl-C keeps its usual meaning for commands other than the worker's
    signal.signal(signal.SIGINT, signal.default_int_handler)

__all__ = ["app"]
