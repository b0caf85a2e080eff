"""Settings from the environment and a ``.env`` file, validated once, secrets kept secret.

Precedence, highest first: command-line options, the process environment, ``.env``, defaults.
Nothing is ever written back into ``os.environ``. Every field's environment variable is its
name in upper case; ``env.example`` documents each one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from mealplan_cli.errors import ConfigurationError
from mealplan_cli.redact import Redactor


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


class Settings(BaseModel):
    """Every setting mealworker reads. Secrets are ``SecretStr``: their repr shows stars."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    planner: PlannerChoice = PlannerChoice.auto
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4.1-mini"
    openai_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    openai_max_attempts: int = Field(4, ge=1, le=10)
    openai_concurrency: int = Field(4, ge=1, le=32)
    openai_price_input_per_mtok: float | None = Field(None, ge=0)
    openai_price_cached_per_mtok: float | None = Field(None, ge=0)
    openai_price_output_per_mtok: float | None = Field(None, ge=0)

    unsplash_access_key: SecretStr | None = None
    unsplash_api_url: str = "https://api.unsplash.com"
    unsplash_app_name: str = "mealworker"
    unsplash_min_remaining: int = Field(5, ge=0)
    unsplash_timeout_seconds: float = Field(5.0, gt=0, le=60)

    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    database_url: SecretStr | None = None
    mealworker_data_dir: Path | None = None
    mealworker_embedded: bool = False
    database_connect_timeout_seconds: int = Field(5, ge=2, le=300)

    worker_id: str | None = None
    poll_interval_ms: int = Field(1000, ge=10, le=600_000)
    max_concurrent_jobs: int = Field(4, ge=1, le=1000)
    lease_seconds: float = Field(60.0, ge=1, le=3600)
    job_timeout_seconds: float = Field(900.0, gt=0, le=86_400)
    shutdown_grace_seconds: float = Field(30.0, ge=0, le=3600)
    stale_sweep_seconds: float = Field(30.0, ge=1, le=3600)
    log_level: LogLevel = LogLevel.INFO
    log_format: Literal["rich", "text", "json"] = "rich"
    log_dir: Path = Path("logs")
    metrics_port: int | None = Field(None, ge=1, le=65535)

    @field_validator("openai_base_url", "unsplash_api_url", "supabase_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator(*PLACEHOLDER_HINTS, mode="before")
    @classmethod
    def _not_a_placeholder(cls, value: Any, info: ValidationInfo) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and is_placeholder(raw):
            shown = raw if info.field_name != "database_url" else "the example"
            raise ValueError(
                f"still the placeholder from env.example ({shown}): set "
                f"{PLACEHOLDER_HINTS[str(info.field_name)]}, or delete the line"
            )
        return value

    @field_validator("planner", mode="before")
    @classmethod
    def _planner_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        name = value.strip().upper()
        return LEVEL_ALIASES.get(name, name)

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
        file_values = dotenv_values(env_file) if env_file and env_file.is_file() else {}
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
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigurationError(_explain(error, sources)) from None

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


def _explain(error: ValidationError, sources: Mapping[str, str]) -> str:
    """One line per bad setting: where it came from and what is wrong; never the value."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else "settings"
        where = sources.get(field, field.upper())
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"invalid setting {where}: {message}")
    return "; ".join(lines)
