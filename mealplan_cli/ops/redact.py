"""Masking secrets in any text mealworker prints: errors, log records, tracebacks, JSON.

Two rules, applied together by ``Redactor.mask``:

- **By position.** Whatever sits where a connection string keeps its password is masked, in
  every form libpq accepts or an operator may mistype: ``scheme://user:PASS@host``,
  ``...?password=PASS``, the keyword form ``password=PASS`` or ``password='P A S S'``, and the
  scheme-less ``user:PASS@host/db``. This needs no knowledge of the settings.
- **By value.** The exact values of the configured secrets (API keys, the whole
  ``DATABASE_URL``, its password) are masked wherever they appear, but only when a value is
  distinctive enough to be a secret: a password that is literally ``postgres`` is masked in its
  positions, never as the word "postgres" in ordinary text.

``SecretStr`` is the settings' secret type: our own rather than ``pydantic.SecretStr`` (whose
interface it keeps) so that reading the settings does not load pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*):(?P<pw>\S*)@")
"""The password runs to the last ``@`` before white space: a password holding ``@``, ``:``,
``/`` or quotes is masked whole (libpq itself would stop at its first ``@``)."""
_BARE_PASSWORD = re.compile(
    r"(?P<head>(?<![\w:/.@-])[A-Za-z_][\w.-]*):(?P<pw>[^\s@/:'\"]+)@(?=[\w.\[/%-])"
)
_PARAM_PASSWORD = re.compile(
    r"(?P<head>[?&]password=)(?P<pw>[^&\s]*[^&\s'\",:;.)]|[^&\s]*)", re.IGNORECASE
)
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>(?<![?&])\b(?:pg)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'?|\S*[^\s'\",:;.)])",
    re.IGNORECASE,
)
"""An unquoted value runs to white space (as libpq reads it) but ends before trailing
punctuation, so ``password=***: reason`` keeps its colon; a password ending in one is still
masked by value when distinctive. A URL's ``?password=`` is ``_PARAM_PASSWORD``'s."""

COMMON_WORDS = frozenset(
    {"postgres", "postgresql", "supabase", "password", "localhost", "mealworker", "service_role"}
)
"""Words that occur in ordinary output and so are never masked by value alone."""


def mask_positions(text: str) -> str:
    """``text`` with every password in a connection-string position replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _PARAM_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    return _BARE_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)


def redact_dsn(dsn: str) -> str:
    """A connection string in any form with its password masked, fit to show as a target."""
    return mask_positions(dsn)


def dsn_passwords(dsn: str) -> list[str]:
    """The password(s) a connection string holds, as written and as libpq reads them."""
    found: list[str] = []
    for pattern in (_URL_PASSWORD, _PARAM_PASSWORD, _BARE_PASSWORD):
        for match in pattern.finditer(dsn):
            found += [match["pw"], unquote(match["pw"])]
    for match in _KEYWORD_PASSWORD.finditer(dsn):
        raw = match["pw"]
        if raw.startswith("'"):
            inner = raw[1:-1] if raw.endswith("'") and len(raw) > 1 else raw[1:]
            found += [inner, re.sub(r"\\(.)", r"\1", inner)]
        else:
            found.append(raw)
    return [value for value in dict.fromkeys(found) if value]


def distinctive(value: str) -> bool:
    """Whether ``value`` is unlikely to occur by chance in ordinary text.

    At least 8 characters mixing two kinds (letters, digits, symbols, upper and lower case),
    or 12 of any kind; never a word mealworker's own output uses.
    """
    if value.lower() in COMMON_WORDS or len(value) < 8:
        return False
    kinds = sum(
        any(test(c) for c in value)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    return kinds >= 2 or len(value) >= 12


class Redactor:
    """Masks secrets in text: by position always, by value for the distinctive ones."""

    def __init__(self, secrets: Iterable[str] = (), dsns: Iterable[str] = ()) -> None:
        replacements: dict[str, str] = {}
        for dsn in dsns:
            if dsn:
                replacements[dsn] = redact_dsn(dsn)
                for password in dsn_passwords(dsn):
                    if distinctive(password):
                        replacements[password] = MASK
        for secret in secrets:
            if distinctive(secret):
                replacements[secret] = MASK
        self._replacements = sorted(replacements.items(), key=lambda item: -len(item[0]))

    @classmethod
    def of(
        cls,
        *,
        database_url: SecretValue | None = None,
        keys: Iterable[SecretValue | None] = (),
    ) -> Redactor:
        dsns = [database_url.get_secret_value()] if database_url is not None else []
        return cls([key.get_secret_value() for key in keys if key is not None], dsns)

    @property
    def values(self) -> Iterator[str]:
        """The exact values masked wherever they appear."""
        return (value for value, _ in self._replacements)

    def mask(self, text: str) -> str:
        for value, replacement in self._replacements:
            text = text.replace(value, replacement)
        return mask_positions(text)


STARS = "**********"
"""How a secret shows itself: pydantic's ten stars, so output reads the same as before."""


@runtime_checkable
class SecretValue(Protocol):
    """Anything holding a secret string: ours, ``pydantic.SecretStr``, or a look-alike."""

    def get_secret_value(self) -> str: ...


class SecretStr:
    """A secret string: compared and hashed by value, shown only as stars."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a secret must be a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def get_secret_value(self) -> str:
        return self._value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a secret cannot be changed; make a new one")

    def __repr__(self) -> str:
        return f"SecretStr('{STARS}')"

    def __str__(self) -> str:
        return STARS if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> tuple[type[SecretStr], tuple[str]]:
        return (SecretStr, (self._value,))


_current = Redactor()


def install(redactor: Redactor) -> None:
    """Make ``redactor`` the one ``mask`` uses: the settings' secrets, once they are known."""
    global _current
    _current = redactor


def mask(text: str) -> str:
    """``text`` with every secret known to this process masked."""
    return _current.mask(text)
