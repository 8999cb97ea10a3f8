"""Settings read once, from flags and environment, into a frozen object.

A component declares its settings as a frozen dataclass whose fields are made
with :func:`option`; :func:`parse` builds an :mod:`argparse` parser from it
(``send_deadline`` becomes ``--send-deadline`` and ``FRAMECAST_SEND_DEADLINE``),
reads the command line, falls back to the environment, then to the default,
and validates every value. A bad value fails with one line that names the flag
or variable it came from, never with a traceback.

Example::

    @dataclass(frozen=True, kw_only=True)
    class Config:
        port: int = option(8000, help="TCP port to listen on.", check=port_number)

    config = parse(Config, argv, prog="framecast gateway", description="...")
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, get_type_hints

from framecast.exceptions import ConfigError

__all__ = [
    "LOG_LEVELS",
    "ConfigError",
    "env_name",
    "log_level",
    "non_negative",
    "option",
    "parse",
    "port_number",
    "positive",
    "redis_url",
]

T = TypeVar("T")

ENV_PREFIX = "FRAMECAST_"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The ``--log-level`` values every component accepts (any case)."""


def option(
    default: Any,
    *,
    help: str,
    env: str | None = None,
    check: Callable[[Any], Any] | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    group: str = "options",
) -> Any:
    """Declare a setting.

    Args:
        default: Value when neither flag nor environment variable is given.
        help: One or two sentences for ``--help``.
        env: Environment variable; ``FRAMECAST_<NAME>`` when omitted. Pass
            a full name (``"REDIS_URL"``) to read a conventional variable.
        check: Called with the converted value; raises ValueError with a
            reason when the value is not acceptable.
        choices: Allowed string values.
        metavar: Placeholder shown in ``--help``.
        group: Heading the flag is listed under in ``--help``.
    """
    metadata = {
        "help": help,
        "env": env,
        "check": check,
        "choices": choices,
        "metavar": metavar,
        "group": group,
    }
    if isinstance(default, list | dict | set):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=metadata)


def env_name(field: dataclasses.Field[Any]) -> str:
    """The environment variable a field is read from."""
    return field.metadata.get("env") or ENV_PREFIX + field.name.upper()


def _flag(field: dataclasses.Field[Any]) -> str:
    return "--" + field.name.replace("_", "-")


# What any numeric setting may hold, whatever its own check says: every integer fits the 64-bit
# signed integers Redis takes (MAXLEN, COUNT) and C's long long; every float is finite (nan passes
# every comparison-based check, inf never ends a wait) and at most a billion (a billion seconds is
# 31 years; socket and asyncio timeouts overflow past about 9.2e9 s).
INT_RANGE = (-(2**63), 2**63 - 1)
FLOAT_LIMIT = 1e9


def _convert(kind: Any, raw: str) -> Any:
    """Convert a string to the field's declared type."""
    if "\x00" in raw:
        # No argv or environment variable can carry one; a config file can, and a NUL in a path or
        # URL fails only later, deep in a child (`embedded null byte`).
        raise ValueError("must not contain a NUL character")
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true/false, yes/no, on/off or 1/0")
    if kind is int:
        try:
            number = int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not INT_RANGE[0] <= number <= INT_RANGE[1]:
            raise ValueError("expected a whole number within 64 bits (at most 9223372036854775807)")
        return number
    if kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value) or abs(value) > FLOAT_LIMIT:
            raise ValueError("expected a finite number no larger than 1e9")
        return value
    if kind == (str | None) or kind == (int | None) or kind == (float | None):
        if raw == "":
            return None
        inner = next(a for a in kind.__args__ if a is not type(None))
        return _convert(inner, raw)
    if kind == tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def parse(
    cls: type[T],
    argv: Sequence[str] | None = None,
    *,
    prog: str,
    description: str,
    epilog: str | None = None,
    environ: Mapping[str, str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> T:
    """Read settings for ``cls`` from the command line and environment.

    Args:
        cls: A dataclass whose fields were declared with :func:`option`.
        argv: Arguments without the program name; ``sys.argv[1:]`` if None.
        prog: Program name shown in usage.
        description: What the program does, for ``--help``.
        epilog: Text after the options in ``--help``.
        environ: Environment to read; ``os.environ`` if None.
        extra: Adds arguments that are not settings (positional ones).

    Returns:
        The frozen settings object. Arguments added by ``extra`` are set on
        the object as ``args`` is not kept: use :func:`parse_with_args`.

    Raises:
        SystemExit: With status 2 and one line naming the bad value, as
            argparse does for a bad flag.
    """
    config, _ = parse_with_args(
        cls, argv, prog=prog, description=description, epilog=epilog, environ=environ, extra=extra
    )
    return config


def parse_with_args(
    cls: type[T],
    argv: Sequence[str] | None = None,
    *,
    prog: str,
    description: str,
    epilog: str | None = None,
    environ: Mapping[str, str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[T, argparse.Namespace]:
    """Like :func:`parse`, also returning the raw namespace (for ``extra`` arguments)."""
    environ = os.environ if environ is None else environ
    hints = get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("help")]  # type: ignore[arg-type]
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if extra is not None:
        extra(parser)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields:
        group_name = f.metadata["group"]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        help_text = f"{f.metadata['help']} [env {env_name(f)}; default: {shown!s}]"
        kind = hints[f.name]
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": None,
            "help": help_text.replace("%", "%%"),
            "metavar": f.metadata["metavar"],
        }
        if kind is bool:
            kwargs.pop("metavar")
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = str
        groups[group_name].add_argument(_flag(f), **kwargs)

    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for f in fields:
        kind = hints[f.name]
        given = getattr(args, f.name)
        source = _flag(f)
        if given is None and env_name(f) in environ:
            given = environ[env_name(f)]
            source = env_name(f)
        if given is None:
            continue
        try:
            value = given if isinstance(given, bool) else _convert(kind, given)
            _accept(f, value)
        except ValueError as exc:
            parser.exit(2, f"{prog}: error: {source}={given!s}: {exc}\n")
        values[f.name] = value
    try:
        config = cls(**values)
    except (ConfigError, ValueError) as exc:
        parser.exit(2, f"{prog}: error: {exc}\n")
    return config, args


# Reusable checks -------------------------------------------------------------


def positive(value: float) -> None:
    """Accept numbers above zero."""
    if value <= 0:
        raise ValueError("must be greater than 0")


def non_negative(value: float) -> None:
    """Accept zero and above."""
    if value < 0:
        raise ValueError("must be 0 or greater")


def port_number(value: int) -> None:
    """Accept TCP ports 0-65535 (0 picks a free one)."""
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port between 0 and 65535")


def log_level(value: str) -> None:
    """Accept a :data:`LOG_LEVELS` name, in any case."""
    if value.upper() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")


def redis_url(value: str) -> None:
    """Accept the URLs redis-py's ``from_url`` accepts: ``redis://``, ``rediss://``, ``unix://``."""
    # The same case-sensitive prefixes redis-py checks, so a URL that passes here also connects.
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")


def fail(prog: str, message: str, status: int = 1) -> int:
    """Print one clear error line for a runtime failure and return the exit status."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def markdown_table(cls: type) -> str:
    """A Markdown table of a settings class: flag, environment variable, default, meaning.

    The README's configuration section is generated with this, and a test keeps it in step.
    """
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.metadata.get("help"):
            continue
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        rows.append(f"| `{_flag(f)}` | `{env_name(f)}` | `{shown}` | {f.metadata['help']} |")
    return "\n".join(rows)


def check_value(cls: type, name: str, raw: str) -> Any:
    """Convert and check one setting of ``cls`` given as text, as :func:`parse` would.

    Used where settings come from somewhere else than flags and environment (a camera in
    ``framecast.toml``), so the same rules apply and the same reasons are given.

    Raises:
        ValueError: ``name`` is not a setting of ``cls``, or ``raw`` is not acceptable for it.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("help")}
    field = fields.get(name)
    if field is None:
        raise ValueError(f"unknown setting (known: {', '.join(sorted(fields))})")
    value = _convert(get_type_hints(cls)[name], raw)
    _accept(field, value)
    return value


def _accept(field: dataclasses.Field[Any], value: Any) -> None:
    """Apply a setting's ``choices`` and ``check`` to its converted value (raises ValueError)."""
    choices = field.metadata["choices"]
    if choices is not None and value not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}")
    check = field.metadata["check"]
    if check is not None and value is not None:
        check(value)
