"""mealworker: a background worker and operator CLI for AI meal-plan generation."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Looked up on first use: importlib.metadata is slow to import, and ``mealworker`` installs
    # its signal handler only after this package is imported.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("mealworker")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0"
    raise AttributeError(name)
