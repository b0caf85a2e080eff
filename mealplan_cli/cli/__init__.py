"""The ``mealworker`` command: one thin function per command, grouped in modules."""

from mealplan_cli.cli import (  # noqa: F401  (importing a module registers its commands)
    db_commands,
    demo,
    doctor,
    enqueue,
    generate,
    requeue,
    stats,
    tail,
    worker_commands,
)
from mealplan_cli.cli.app import app

__all__ = ["app"]
