"""How one setting's raw value is read: parsed like pydantic's lax mode, checked against its
bounds, refused with pydantic's wording. ``config.Settings`` declares its fields with these.

Plain Python, so that reading the settings costs no pydantic import (a ping worker and every
``mealworker`` command read them).
"""

from __future__ import annotations

import math
import operator
import os
import re
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mealplan_cli.ops.redact import SecretStr, SecretValue


def _choices(values: Iterable[str]) -> str:
    """``'a', 'b' or 'c'``, as pydantic words a choice."""
    quoted = [repr(value) for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("Input should be a valid string")
    return value


_INTEGER = re.compile(r"[+-]?[0-9][0-9_]*(\.0*)?")


def _integer(value: Any) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("Input should be a valid integer, got a number with a fractional part")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not _INTEGER.fullmatch(text):
            raise ValueError(
                "Input should be a valid integer, unable to parse string as an integer"
            )
        return int(text.split(".")[0])
    raise ValueError("Input should be a valid integer")


def _number(value: Any) -> float:
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(
                "Input should be a valid number, unable to parse string as a number"
            ) from None
    else:
        raise ValueError("Input should be a valid number")
    if not math.isfinite(number):
        raise ValueError("Input should be a finite number")
    return number


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise ValueError("Input should be a valid boolean, unable to interpret input")


def _path(value: Any) -> Path:
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise ValueError("Input is not a valid path")


def _secret(value: Any) -> SecretStr:
    """Ours, a plain string, or anything with ``get_secret_value()`` (``pydantic.SecretStr``)."""
    if isinstance(value, SecretStr):
        return value
    raw = value.get_secret_value() if isinstance(value, SecretValue) else value
    if not isinstance(raw, str):
        raise ValueError("Input should be a valid string")
    return SecretStr(raw)


def _enum(kind: type[StrEnum]) -> Callable[[Any], Any]:
    wording = f"Input should be {_choices(choice.value for choice in kind)}"

    def parse(value: Any) -> StrEnum:
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except ValueError:
            raise ValueError(wording) from None

    return parse


def _literal(choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"Input should be {_choices(choices)}")
        return str(value)

    return parse


_PARSERS: dict[Any, Callable[[Any], Any]] = {
    str: _string,
    int: _integer,
    float: _number,
    bool: _boolean,
    Path: _path,
    SecretStr: _secret,
}


def parser_for(annotation: Any) -> Callable[[Any], Any]:
    """How to read a value of ``annotation`` (``X | None`` reads as ``X``)."""
    kinds = [kind for kind in get_args(annotation) if kind is not type(None)]
    kind = kinds[0] if kinds and get_origin(annotation) is not Literal else annotation
    if get_origin(kind) is Literal:
        return _literal(get_args(kind))
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return _enum(kind)
    return _PARSERS[kind]


class SettingField:
    """One setting's default and bounds, as ``Settings.model_fields[name]`` gives them.

    Its type is the class annotation's; a setting whose default is None may also be None.
    """

    __slots__ = ("after", "annotation", "before", "default", "ge", "gt", "le", "name", "parse")

    def __init__(
        self,
        default: Any,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
    ) -> None:
        self.name = ""
        self.annotation: Any = None
        self.default = default
        self.ge, self.gt, self.le = ge, gt, le
        self.parse: Callable[[Any], Any] = _string
        self.before: Callable[[str, Any], Any] | None = None
        """Runs on the raw value first (e.g. lower-casing, refusing a placeholder)."""
        self.after: Callable[[Any], Any] | None = None
        """Runs on the parsed, in-bounds value (e.g. checking a URL's scheme)."""

    def __repr__(self) -> str:
        bounds = "".join(
            f", {key}={value}"
            for key, value in (("ge", self.ge), ("gt", self.gt), ("le", self.le))
            if value is not None
        )
        return f"SettingField({self.default!r}{bounds})"

    def validate(self, value: Any) -> Any:
        """``value`` as this setting's type, in bounds; else ``ValueError`` saying why."""
        if value is None and self.default is None:
            return None
        if self.before is not None:
            value = self.before(self.name, value)
        value = self.parse(value)
        for bound, fails, words in (
            (self.ge, operator.lt, "greater than or equal to"),
            (self.gt, operator.le, "greater than"),
            (self.le, operator.gt, "less than or equal to"),
        ):
            if bound is not None and fails(value, bound):
                raise ValueError(f"Input should be {words} {bound}")
        return self.after(value) if self.after is not None else value


def setting(
    default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> Any:
    """A bounded setting's default, as ``Settings``' class body declares it."""
    return SettingField(default, ge=ge, gt=gt, le=le)
