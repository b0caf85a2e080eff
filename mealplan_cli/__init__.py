"""mealworker: a background worker and operator CLI for AI meal-plan generation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mealworker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
