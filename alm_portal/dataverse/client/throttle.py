"""Process-wide throttle state per environment and ``Retry-After`` parsing (docs/dataverse.md §1.5)."""

from __future__ import annotations

import email.utils
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit


def _environment_key(environment_url: str) -> str:
    parts = urlsplit(environment_url)
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


_throttle_lock = threading.Lock()
_not_before: dict[str, float] = {}


def throttle_not_before(environment_url: str) -> datetime | None:
    """When requests to this environment may resume after a 429 (UTC), or None when not throttled.

    A Celery task that receives :class:`Throttled` can persist this value (docs/architecture.md §1: a ``not_before``
    column) and give it back to another process with :func:`restore_throttle_not_before`.
    """
    with _throttle_lock:
        until = _not_before.get(_environment_key(environment_url))
    if until is None or until <= time.time():
        return None
    return datetime.fromtimestamp(until, tz=UTC)


def restore_throttle_not_before(environment_url: str, not_before: datetime) -> None:
    """Adopt a persisted "not before" time for an environment (only ever moves it later)."""
    if not_before.tzinfo is None:
        raise ValueError("not_before must be timezone-aware")
    _extend_not_before(_environment_key(environment_url), not_before.timestamp())


def clear_throttle(environment_url: str | None = None) -> None:
    """Forget the throttle state of one environment (or all): for tests and administrative resets."""
    with _throttle_lock:
        if environment_url is None:
            _not_before.clear()
        else:
            _not_before.pop(_environment_key(environment_url), None)


def _extend_not_before(key: str, until: float) -> None:
    with _throttle_lock:
        if until > _not_before.get(key, 0.0):
            _not_before[key] = until


def _remaining_throttle(key: str) -> float:
    with _throttle_lock:
        until = _not_before.get(key)
    if until is None:
        return 0.0
    return max(0.0, until - time.time())


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (docs/dataverse.md §1.5); an HTTP-date is accepted as well (RFC 9110)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


# --- result types --------------------------------------------------------------------------------------------
