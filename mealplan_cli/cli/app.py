"""The Typer application, its global options, and how every command reports errors."""

from __future__ import annotations

import traceback
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer
from typer.core import TyperGroup

from mealplan_cli import __version__
from mealplan_cli.ops import redact
from mealplan_cli.ops.errors import MealworkerError

try:  # typer keeps its own copy of click from 0.26 on
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef, import-not-found, unused-ignore]

if TYPE_CHECKING:
    from rich.console import Console

    from mealplan_cli.settings.config import Settings

T = TypeVar("T")

USAGE_EXIT_CODE = 2
"""A command that was asked wrongly: an unknown option, a malformed value, an unreadable
settings file. Nothing was done. (1 is every other error; README's Troubleshooting.)"""


class Planner(StrEnum):
    """``--planner``'s choices: ``config.PlannerChoice``'s values, without importing the
    settings for ``--help`` (tests/process/test_cli_startup.py keeps the two equal)."""

    auto = "auto"
    openai = "openai"
    catalog = "catalog"


class _Commands(TyperGroup):
    """The command group, with usage errors in the same one-line style as every other error
    (``error: <what> (see mealworker <command> --help)``, exit code 2), rather than click's
    usage, hint and blank line before the error."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as error:
            _usage_error(error)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as error:
            _usage_error(error)


def _usage_error(error: UsageError) -> NoReturn:
    if isinstance(error, NoArgsIsHelpError):
        raise error  # the help itself
    where = f" (see {error.ctx.command_path} --help)" if error.ctx is not None else ""
    line = f"{typer.style('error:', fg='red', bold=True)} {error.format_message()}{where}"
    typer.echo(redact.mask(line), err=True)
    raise typer.Exit(USAGE_EXIT_CODE) from None


PLANNER_HELP = (
    "Who writes the plans: openai, catalog (offline, the bundled recipes), or auto (OpenAI "
    "when OPENAI_API_KEY is set, else the catalogue)."
)

SETTINGS_VARIABLES = (
    "PLANNER OPENAI_API_KEY OPENAI_BASE_URL OPENAI_MODEL OPENAI_TIMEOUT_SECONDS "
    "OPENAI_MAX_ATTEMPTS OPENAI_CONCURRENCY OPENAI_PRICE_INPUT_PER_MTOK "
    "OPENAI_PRICE_CACHED_PER_MTOK OPENAI_PRICE_OUTPUT_PER_MTOK OPENAI_SHARED_BUDGET "
    "OPENAI_BUDGET_SHARE OPENAI_TPM_LIMIT OPENAI_RPM_LIMIT OPENAI_DAILY_TOKEN_CAP "
    "OPENAI_DAILY_USD_CAP OPENAI_DAILY_CAP_FALLBACK UNSPLASH_ACCESS_KEY "
    "UNSPLASH_API_URL UNSPLASH_APP_NAME UNSPLASH_MIN_REMAINING UNSPLASH_TIMEOUT_SECONDS "
    "SUPABASE_URL SUPABASE_SERVICE_ROLE_KEY DATABASE_URL MEALWORKER_DATA_DIR MEALWORKER_EMBEDDED "
    "DATABASE_CONNECT_TIMEOUT_SECONDS WORKER_ID POLL_INTERVAL_MS MAX_CONCURRENT_JOBS "
    "LEASE_SECONDS JOB_TIMEOUT_SECONDS SHUTDOWN_GRACE_SECONDS STALE_SWEEP_SECONDS LOG_LEVEL "
    "LOG_FORMAT LOG_DIR METRICS_PORT"
).split()
"""Every setting's environment variable, for ``--help`` without loading the settings
(tests/process/test_cli_startup.py keeps it equal to ``Settings.model_fields``)."""

app = typer.Typer(
    cls=_Commands,
    name="mealworker",
    help="Generate meal plans, and run the worker that generates them for a Supabase app.",
    epilog="Settings are environment variables, or lines of the --env-file (.env): "
    + ", ".join(SETTINGS_VARIABLES)
    + ". env.example describes each; a command's option, where it has one, wins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help, not rich's panels: rich's help formatter loads a Markdown parser
    # (~90 ms) and every `--help` and usage error would pay for it.
    rich_markup_mode=None,
)


class _LazyConsole:
    """A rich ``Console``, made when first used: a worker under PM2 or systemd (logging one
    plain line a record) never loads rich at all."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _made(self) -> Console:
        if self._console is None:
            import os

            from rich.console import Console

            console = Console(**self._options)
            if not console.is_terminal and not os.environ.get("COLUMNS"):
                # Off a terminal (a pipe, a file, a log collector) there is no width to fit:
                # rich's 80 columns would break lines that scripts and greps read whole.
                console = Console(width=OFF_TERMINAL_WIDTH, **self._options)
            self._console = console
        return self._console

    def forget(self) -> None:
        """Measure the terminal again at the next use (a new command in the same process)."""
        self._console = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __enter__(self) -> Console:  # rich's Live and Progress hold the console this way
        return self._made().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self._made().__exit__(*exc_info)


OFF_TERMINAL_WIDTH = 10_000
"""Wide enough that no line of mealworker's output wraps when it goes to a pipe or a file."""

_stdout = _LazyConsole()
_stderr = _LazyConsole(stderr=True)
stdout = cast("Console", _stdout)
stderr = cast("Console", _stderr)


@dataclass
class GlobalOptions:
    env_file: Path
    debug: bool


def _version(value: bool) -> None:
    if value:
        stdout.print(f"mealworker {__version__}")
        raise typer.Exit()


def _source(ctx: typer.Context, name: str) -> str:
    """Where Typer took a parameter from: COMMANDLINE, ENVIRONMENT, DEFAULT..."""
    return getattr(ctx.get_parameter_source(name), "name", "")


@app.callback()
def main(
    ctx: typer.Context,
    env_file: Annotated[
        Path, typer.Option("--env-file", help="Settings file read before the environment.")
    ] = Path(".env"),
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors (secrets masked).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    from mealplan_cli.ops.logs import quiet_drivers

    # Each command measures its own terminal: a process that runs several (the tests, an app
    # embedding the CLI) must not keep the first one's width.
    _stdout.forget()
    _stderr.forget()
    quiet_drivers()
    if _source(ctx, "env_file") != "DEFAULT" and not env_file.is_file():
        fail(
            f"--env-file {env_file}: no such file; give the path of an existing settings file",
            USAGE_EXIT_CODE,
        )
    ctx.obj = GlobalOptions(env_file=env_file, debug=debug)


def error_line(message: str) -> None:
    """``error: <message>``, one line on stderr, secrets masked: every error looks alike."""
    from rich.text import Text

    line = Text.assemble(("error:", "bold red"), " ", redact.mask(message))
    stderr.print(line, highlight=False, soft_wrap=True)


def warning_line(message: str) -> None:
    """``warning: <message>``, one line on stderr, secrets masked; the command goes on."""
    from rich.text import Text

    line = Text.assemble(("warning:", "bold yellow"), " ", redact.mask(message))
    stderr.print(line, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr (secrets masked) and exit code 1 (or ``code``)."""
    error_line(message)
    raise typer.Exit(code)


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions(Path(".env"), False)


def load_settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """Settings for a command: ``.env``, the environment, then the command's own options.

    An option that Typer filled from its ``envvar`` is left out of the overrides: the setting
    reads the same variable itself, so an error names the environment, not the command line.
    """
    from mealplan_cli.ops.errors import ConfigurationError
    from mealplan_cli.settings.config import Settings, read_settings_file  # not loaded for --help

    env_file = options(ctx).env_file
    try:
        settings_file = read_settings_file(env_file)
    except ConfigurationError as error:
        fail(str(error), USAGE_EXIT_CODE)
    for warning in settings_file.warnings():
        warning_line(warning)

    from_environment = {
        str(param.envvar).lower()
        for param in ctx.command.params
        if param.name
        and getattr(param, "envvar", None)
        and _source(ctx, param.name) == "ENVIRONMENT"
    }
    overrides = {k: v for k, v in overrides.items() if k not in from_environment}
    settings: Settings = run_checked(ctx, lambda: Settings.load(overrides, env_file=env_file))
    redact.install(settings.redactor())
    from mealplan_cli.core.db import first_start

    first_start.install(_creating_database)
    return settings


@contextmanager
def _creating_database(data_dir: Path) -> Iterator[None]:
    """A spinner with a sentence on stderr while initdb runs (the line alone off a terminal,
    where a spinner would only be noise in a log)."""
    sentence = (
        f"creating the embedded PostgreSQL database in {data_dir} (first run only; about "
        "half a minute)"
    )
    if not stderr.is_terminal:
        stderr.print(sentence, highlight=False, soft_wrap=True)
        yield
        return
    with stderr.status(sentence, spinner="dots"):
        yield
    stderr.print(f"created the embedded PostgreSQL database in {data_dir}", highlight=False)


def run_checked(ctx: typer.Context, action: Any) -> Any:
    """Run ``action``; a mealworker error becomes one line on stderr and exit code 1.

    With ``--debug``, and for an error that is not ours (a bug), the traceback is printed
    instead, its secrets masked like every other line.
    """
    try:
        return action()
    except MealworkerError as error:
        if options(ctx).debug:
            _traceback(error)
        fail(str(error))
    except (KeyboardInterrupt, typer.Exit, typer.Abort):
        raise
    except Exception as error:
        _traceback(error)


def _traceback(error: BaseException) -> NoReturn:
    text = "".join(traceback.format_exception(error))
    stderr.out(redact.mask(text).rstrip(), highlight=False)
    raise typer.Exit(1) from None


def run_async(
    ctx: typer.Context, coroutine: Coroutine[Any, Any, T], *, until_interrupted: bool = False
) -> T:
    """Run one async command body, with the same error handling as ``run_checked``.

    Ctrl-C ends a command that runs ``until_interrupted`` (``tail``, ``stats --watch``) with
    exit code 0; any other command it interrupts exits 130, as shells expect.
    """
    import asyncio

    try:
        result: T = run_checked(ctx, lambda: asyncio.run(coroutine))
    except KeyboardInterrupt:
        if until_interrupted:
            raise typer.Exit(0) from None
        stderr.print("interrupted")
        raise typer.Exit(130) from None
    return result


def ready(message: str) -> bool:
    """A command that runs until interrupted says once that it is ready: a person knows it
    works, and a script (or a test) can wait for this line rather than for time."""
    from rich.text import Text

    stderr.print(Text(message, style="dim"), highlight=False)
    return True
