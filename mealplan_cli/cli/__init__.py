"""The ``mealworker`` command: one thin function per command, grouped in modules."""

from mealplan_cli.cli.app import app
from mealplan_cli.cli.generate import generate  # noqa: F401  (registers the command)

__all__ = ["app"]
