"""One error tree: every exception mealworker defines lives in ``mealplan_cli.ops.errors`` and is a
``MealworkerError`` with ``retryable``, so a caller (the worker, the CLI) can handle any of them
the same way."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mealplan_cli
from mealplan_cli.ops.errors import MealworkerError


def every_module() -> list[str]:
    prefix = mealplan_cli.__name__ + "."
    return [
        info.name
        for info in pkgutil.walk_packages(mealplan_cli.__path__, prefix)
        if not info.name.endswith("__main__")
    ]


def test_every_exception_is_in_the_one_tree() -> None:
    defined: dict[str, type[BaseException]] = {}
    for name in every_module():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("mealplan_cli"):
                defined[f"{value.__module__}.{value.__qualname__}"] = value
    assert len(defined) > 15  # it did find the tree
    outside = sorted(name for name in defined if not name.startswith("mealplan_cli.ops.errors."))
    assert outside == []
    assert sorted(n for n, cls in defined.items() if not issubclass(cls, MealworkerError)) == []
    assert all(isinstance(getattr(cls, "retryable", None), bool) for cls in defined.values())
