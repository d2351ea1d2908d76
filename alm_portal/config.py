"""Strict readers for configuration taken from environment variables.

Every setting the portal reads from the environment goes through one of these helpers, so a
missing or malformed value stops start-up with a single line that names the variable instead of
failing later somewhere far from the cause.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path


class ConfigurationError(SystemExit):
    """Raised while settings load; SystemExit prints the message as one line and exits non-zero."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"configuration error: {variable}: {problem}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str:
    """Return a string variable; `required` makes an unset or empty value fatal."""
    value = os.environ.get(name)
    if value is None or value == "":
        if required:
            raise ConfigurationError(name, "is required but not set")
        if default is None:
            raise ConfigurationError(name, "is not set and has no default")
        return default
    return value


def env_optional(name: str) -> str | None:
    """Return a variable's value, or None when it is unset or empty."""
    value = os.environ.get(name, "")
    return value or None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(name, f"must be true or false, got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        value = default
    else:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(name, f"must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigurationError(name, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(name, f"must be at most {maximum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_json_str_map(
    name: str,
    default: dict[str, str],
    *,
    allowed_values: tuple[str, ...] | None = None,
    value_pattern: str | None = None,
) -> dict[str, str]:
    """A JSON object of non-empty strings to strings, e.g. ALM_SSO_ROLE_MAP='{"ALM.Admin": "admin"}'.

    Strict: anything else (a list, a number, an empty key, an unknown value) stops start-up, because a
    mapping that silently drops an entry would sign people in with the wrong role.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return dict(default)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(name, f"must be a JSON object ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ConfigurationError(name, "must be a JSON object of strings to strings")
    for key, item in value.items():
        if not key.strip() or not isinstance(item, str):
            raise ConfigurationError(name, f"entry {key!r} must map a non-empty string to a string")
        if allowed_values is not None and item not in allowed_values:
            raise ConfigurationError(name, f"entry {key!r}: {item!r} is not one of {', '.join(allowed_values)}")
        if value_pattern is not None and not re.match(value_pattern, item):
            raise ConfigurationError(name, f"entry {key!r}: {item!r} does not match {value_pattern}")
    return value


_RATE = re.compile(r"^(?P<count>[1-9][0-9]*)/(?P<period>s|sec|second|m|min|minute|h|hour|d|day)$")
_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(text: str) -> tuple[int, int] | None:
    """`"60/min"` → (60, 60); `"off"` → None (no limit). Raises ValueError for anything else."""
    text = text.strip().lower()
    if text == "off":
        return None
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate such as 60/min, 5/s, 1000/hour or off")
    return int(match["count"]), _PERIOD_SECONDS[match["period"][0]]


def env_rate(name: str, default: str) -> str:
    """A request rate such as `60/min` (per second, minute, hour or day) or `off`, checked at start-up."""
    value = env_str(name, default).strip().lower()
    try:
        parse_rate(value)
    except ValueError as exc:
        raise ConfigurationError(name, str(exc)) from None
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ConfigurationError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_secret(name: str, *, production: bool, var_dir: Path, generate: str = "token") -> str:
    """Return a secret: required in production; in development generated once into var/.

    Keeping the generated value in a file means restarts keep sessions, tokens and encrypted
    credentials valid, while a fresh clone never ships a shared secret.
    """
    value = env_optional(name)
    if value:
        return value
    if production:
        raise ConfigurationError(name, "is required in production")
    path = var_dir / "secrets" / name.lower()
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    if generate == "fernet":
        from cryptography.fernet import Fernet

        value = Fernet.generate_key().decode()
    else:
        value = secrets.token_urlsafe(48)
    # Written with owner-only permissions; another process may have raced us, so keep theirs.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
