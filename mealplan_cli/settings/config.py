"""Settings from the environment and a ``.env`` file, validated once, secrets kept secret.

Precedence, highest first: command-line options, the process environment, ``.env``, defaults.
Nothing is ever written back into ``os.environ``. Every field's environment variable is its
name in upper case; ``env.example`` documents each one.
"""

from __future__ import annotations

import difflib
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import FrozenInstanceError, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, get_origin, get_type_hints

from dotenv import dotenv_values

from mealplan_cli.ops.errors import ConfigurationError, SettingsError
from mealplan_cli.ops.redact import Redactor, SecretStr, SecretValue
from mealplan_cli.settings.connection_strings import check_connection_string
from mealplan_cli.settings.values import SettingField, parser_for, setting


class PlannerChoice(StrEnum):
    auto = "auto"
    openai = "openai"
    catalog = "catalog"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


LEVEL_ALIASES = {
    "SILLY": "DEBUG",
    "VERBOSE": "DEBUG",
    "TRACE": "DEBUG",
    "HTTP": "INFO",
    "WARN": "WARNING",
    "CRITICAL": "ERROR",
    "FATAL": "ERROR",
}
"""The original Node worker's level names (winston's npm levels), and a few common ones."""

PLACEHOLDER_HINTS = {
    "openai_api_key": "your key from https://platform.openai.com/api-keys",
    "unsplash_access_key": "your app's Access Key from https://unsplash.com/oauth/applications",
    "supabase_url": "your project's URL (Project Settings > API), e.g. https://abcd.supabase.co",
    "supabase_service_role_key": "the project's service role key (Project Settings > API)",
    "database_url": "the connection string from Project Settings > Database",
}
"""The settings ``env.example`` shows with a placeholder, and where the real value is found."""

_PLACEHOLDER = re.compile(
    r"<[^<>]*>|\.\.\.|(^|//)your[-_]|[-_]here$|^(changeme|change-me|xxx+|todo|replace-?me)$",
    re.IGNORECASE,
)


def is_placeholder(value: str) -> bool:
    """Whether ``value`` is a placeholder left from ``env.example`` or a tutorial.

    ``sk-...``, ``...``, ``https://<project>.supabase.co``, ``your-service-role-key``,
    ``postgresql://postgres:...@db.<project>.supabase.co:5432/postgres`` and the like.
    """
    return bool(_PLACEHOLDER.search(value.strip()))


def _not_a_placeholder(name: str, value: Any) -> Any:
    raw = value.get_secret_value() if isinstance(value, SecretValue) else value
    if isinstance(raw, str) and is_placeholder(raw):
        shown = raw if name != "database_url" else "the example"
        raise ValueError(
            f"still the placeholder from env.example ({shown}): set "
            f"{PLACEHOLDER_HINTS[name]}, or delete the line"
        )
    return value


def _lower(name: str, value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _level_upper(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    level = value.strip().upper()
    return LEVEL_ALIASES.get(level, level)


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


_BEFORE: dict[str, Callable[[str, Any], Any]] = {
    **dict.fromkeys(PLACEHOLDER_HINTS, _not_a_placeholder),
    "planner": _lower,
    "log_format": _lower,
    "log_level": _level_upper,
}
"""What runs on a setting's raw value before it is parsed."""

_HTTP_URLS = frozenset({"openai_base_url", "unsplash_api_url", "supabase_url"})


def _connection_string(value: Any) -> Any:
    if isinstance(value, SecretValue):
        check_connection_string(value.get_secret_value())
    return value


_AFTER: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_HTTP_URLS, _http_url),
    "database_url": _connection_string,
}
"""What runs on a setting's parsed value."""


class Settings:
    """Every setting mealworker reads, validated and frozen. Secrets are ``SecretStr``.

    Plain Python rather than a pydantic model: every command reads the settings, and a
    ping-only worker should not pay for pydantic. The interface kept from the pydantic model:
    keyword construction (strings are parsed, unknown names refused), ``model_fields``,
    ``model_copy(update=...)``, iteration as ``(name, value)`` pairs, equality, hashing.
    """

    model_fields: ClassVar[dict[str, SettingField]]

    planner: PlannerChoice = PlannerChoice.auto
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4.1-mini"
    openai_timeout_seconds: float = setting(120.0, gt=0, le=3600)
    openai_max_attempts: int = setting(4, ge=1, le=10)
    openai_concurrency: int = setting(4, ge=1, le=32)
    openai_price_input_per_mtok: float | None = setting(None, ge=0)
    openai_price_cached_per_mtok: float | None = setting(None, ge=0)
    openai_price_output_per_mtok: float | None = setting(None, ge=0)
    openai_shared_budget: bool = True
    openai_budget_share: float = setting(1.0, gt=0, le=1)
    openai_tpm_limit: int | None = setting(None, ge=1)
    openai_rpm_limit: int | None = setting(None, ge=1)
    openai_daily_token_cap: int | None = setting(None, ge=1)
    openai_daily_usd_cap: float | None = setting(None, gt=0)
    openai_daily_cap_fallback: bool = False

    unsplash_access_key: SecretStr | None = None
    unsplash_api_url: str = "https://api.unsplash.com"
    unsplash_app_name: str = "mealworker"
    unsplash_min_remaining: int = setting(5, ge=0)
    unsplash_timeout_seconds: float = setting(5.0, gt=0, le=60)

    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    database_url: SecretStr | None = None
    mealworker_data_dir: Path | None = None
    mealworker_embedded: bool = False
    database_connect_timeout_seconds: int = setting(5, ge=2, le=300)

    worker_id: str | None = None
    poll_interval_ms: int = setting(1000, ge=10, le=600_000)
    max_concurrent_jobs: int = setting(4, ge=1, le=1000)
    lease_seconds: float = setting(60.0, ge=1, le=3600)
    job_timeout_seconds: float = setting(900.0, gt=0, le=86_400)
    shutdown_grace_seconds: float = setting(30.0, ge=0, le=3600)
    stale_sweep_seconds: float = setting(30.0, ge=1, le=3600)
    log_level: LogLevel = LogLevel.INFO
    log_format: Literal["rich", "text", "json"] = "rich"
    log_dir: Path = Path("logs")
    metrics_port: int | None = setting(None, ge=1, le=65535)

    def __init__(self, **values: Any) -> None:
        """Each value parsed as its setting's type (pydantic's lax mode); raises
        ``SettingsError`` naming every bad or unknown setting."""
        problems: list[tuple[str, str]] = []
        for name, field in self.model_fields.items():
            if name not in values:
                object.__setattr__(self, name, field.default)
                continue
            try:
                object.__setattr__(self, name, field.validate(values[name]))
            except ValueError as error:
                problems.append((name, str(error)))
        for name in values:
            if name not in self.model_fields:
                problems.append((name, "Extra inputs are not permitted"))
        if problems:
            raise SettingsError(_explain(problems, {}), problems)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"settings are frozen: use model_copy(update={{{name!r}: ...}})")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError("settings are frozen")

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self.__dict__.items())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self)
        return f"{type(self).__name__}({shown})"

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Settings:
        """New settings: these with ``update`` on top, validated like any others."""
        return type(self)(**{**self.__dict__, **(update or {})})

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        env_file: Path | None = Path(".env"),
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from ``.env``, then the environment, then ``overrides`` (None skipped).

        ``overrides`` are the command line's; an option that Typer filled from its environment
        variable should not be passed here (the variable is read anyway, and named as such).
        """
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        file_values = read_settings_file(env_file).values if env_file else {}
        env = os.environ if environ is None else environ
        for name in cls.model_fields:
            variable = name.upper()
            for source, mapping in ((str(env_file), file_values), ("environment", env)):
                raw = mapping.get(variable)
                if raw is not None and raw.strip() != "":
                    values[name] = raw.strip()
                    sources[name] = f"{variable} (from {source})"
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
                sources[name] = f"{name.upper()} (from the command line)"
        try:
            return cls(**values)
        except SettingsError as error:
            raise ConfigurationError(_explain(error.problems, sources)) from None

    def redactor(self) -> Redactor:
        """What masks these settings' secrets wherever text is printed."""
        return Redactor.of(
            database_url=self.database_url,
            keys=(self.openai_api_key, self.unsplash_access_key, self.supabase_service_role_key),
        )

    def public(self) -> dict[str, Any]:
        """The settings as JSON-safe values, each secret shown only as set or not set."""
        shown: dict[str, Any] = {}
        for name, value in self:
            if isinstance(value, SecretStr):
                shown[name] = "set (hidden)"
            elif value is None:
                shown[name] = None
            else:
                shown[name] = str(value) if isinstance(value, StrEnum | Path) else value
        return shown


@dataclass(frozen=True)
class SettingsFile:
    """A ``.env`` file as mealworker reads it: its values, and the names it does not know."""

    path: Path
    values: dict[str, str | None]
    unknown: list[tuple[int, str, str | None]]
    """(line, name, the setting it is probably a misspelling of) for each unknown name."""

    def warnings(self) -> list[str]:
        """One sentence per unknown name, for the CLI to print."""
        return [
            f"{self.path} line {line}: {name} is not a mealworker setting"
            + (f" (did you mean {close}?)" if close else "")
            + "; it is ignored"
            for line, name, close in self.unknown
        ]


def read_settings_file(path: Path) -> SettingsFile:
    """The settings in ``path`` (none when there is no such file).

    A line that cannot be read (an unterminated quote, a line that is not ``NAME=value``) is a
    ``ConfigurationError`` naming the file and the line, never the value: python-dotenv only
    warns and skips it, and a skipped ``DATABASE_URL`` would send the command to another
    database (the embedded one) without a word.
    """
    if not path.is_file():
        return SettingsFile(path, {}, [])
    from dotenv.parser import parse_stream

    text = path.read_text(encoding="utf-8-sig", errors="replace")
    known = [name.upper() for name in Settings.model_fields]
    unknown: list[tuple[int, str, str | None]] = []
    for binding in parse_stream(io.StringIO(text)):
        written = binding.original.string
        statement = written.lstrip()
        line = binding.original.line + written[: len(written) - len(statement)].count("\n")
        if binding.error:
            name = re.match(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", statement)
            what = f" (the line setting {name[1]})" if name else ""
            raise ConfigurationError(
                f"settings file {path} line {line}: cannot read it{what}: write NAME=value, "
                "with a quote closed on the same line, or # before a comment"
            )
        if binding.key is not None and binding.key not in known:
            close = difflib.get_close_matches(binding.key.upper(), known, n=1, cutoff=0.75)
            unknown.append((line, binding.key, close[0] if close else None))
    return SettingsFile(path, dict(dotenv_values(stream=io.StringIO(text))), unknown)


def _explain(problems: list[tuple[str, str]], sources: Mapping[str, str]) -> str:
    """One line per bad setting: where it came from and what is wrong; never the value."""
    return "; ".join(
        f"invalid setting {sources.get(name, name.upper())}: {message}"
        for name, message in problems
    )


def _collect_fields(cls: type[Settings]) -> dict[str, SettingField]:
    """The class body's settings, in order, each with its type's parser (class attributes
    removed: an instance keeps its own values)."""
    hints = get_type_hints(cls)
    fields: dict[str, SettingField] = {}
    for name in cls.__annotations__:
        if get_origin(hints[name]) is ClassVar:
            continue
        declared = cls.__dict__[name]
        field = declared if isinstance(declared, SettingField) else SettingField(declared)
        field.name, field.annotation = name, hints[name]
        field.parse = parser_for(hints[name])
        field.before = _BEFORE.get(name)
        field.after = _AFTER.get(name)
        fields[name] = field
        delattr(cls, name)
    return fields


Settings.model_fields = _collect_fields(Settings)
