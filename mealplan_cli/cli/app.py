"""The Typer application, its global options, and how every command reports errors."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from mealplan_cli import __version__
from mealplan_cli.errors import MealworkerError

if TYPE_CHECKING:
    from mealplan_cli.config import Settings

T = TypeVar("T")


class Planner(StrEnum):
    """``--planner``'s choices: ``config.PlannerChoice``'s values, without importing pydantic
    for ``--help`` (tests/test_cli_startup.py keeps the two equal)."""

    auto = "auto"
    openai = "openai"
    catalog = "catalog"


app = typer.Typer(
    name="mealworker",
    help="Generate meal plans, and run the worker that generates them for a Supabase app.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

stdout = Console()
stderr = Console(stderr=True)


@dataclass
class GlobalOptions:
    env_file: Path
    debug: bool


def _version(value: bool) -> None:
    if value:
        stdout.print(f"mealworker {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    env_file: Annotated[
        Path, typer.Option("--env-file", help="Settings file read before the environment.")
    ] = Path(".env"),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = GlobalOptions(env_file=env_file, debug=debug)


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions(Path(".env"), False)


def load_settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """Settings for a command: ``.env``, the environment, then the command's own options."""
    from mealplan_cli.config import Settings  # pydantic: loaded when a command runs, not --help

    settings: Settings = run_checked(
        ctx, lambda: Settings.load(overrides, env_file=options(ctx).env_file)
    )
    return settings


def run_checked(ctx: typer.Context, action: Any) -> Any:
    """Run ``action``; a mealworker error becomes one line on stderr and exit code 1."""
    try:
        return action()
    except MealworkerError as error:
        if options(ctx).debug:
            raise
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def run_async(
    ctx: typer.Context, coroutine: Coroutine[Any, Any, T], *, until_interrupted: bool = False
) -> T:
    """Run one async command body, with the same error handling as ``run_checked``.

    Ctrl-C ends a command that runs ``until_interrupted`` (``tail``, ``stats --watch``) with
    exit code 0; any other command it interrupts exits 130, as shells expect.
    """
    try:
        result: T = run_checked(ctx, lambda: asyncio.run(coroutine))
    except KeyboardInterrupt:
        if until_interrupted:
            raise typer.Exit(0) from None
        stderr.print("interrupted")
        raise typer.Exit(130) from None
    return result
