"""Event patterns: which audit action codes a subscription asks for.

A pattern is an action code (`promotion.approved`) or a prefix ending in a dot (`promotion.` matches
every promotion event). Nothing else: no wildcards, so a subscription never matches more than its
owner could read from its text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from alm_portal.errors import ValidationFailed

_CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_PREFIX = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.$")
MAX_PATTERNS = 50


def checked_patterns(patterns: object, *, field_name: str = "events") -> list[str]:
    """The patterns, stripped, lower-cased, de-duplicated and sorted; ValidationFailed naming the bad ones."""
    if not isinstance(patterns, list | tuple) or not patterns:
        raise ValidationFailed(
            "Name at least one event.", details={field_name: ["A non-empty list of event codes or prefixes."]}
        )
    if len(patterns) > MAX_PATTERNS:
        raise ValidationFailed(
            f"At most {MAX_PATTERNS} events.", details={field_name: [f"At most {MAX_PATTERNS} entries."]}
        )
    cleaned: set[str] = set()
    bad: list[str] = []
    for pattern in patterns:
        text = pattern.strip().lower() if isinstance(pattern, str) else ""
        if len(text) <= 100 and (_CODE.match(text) or _PREFIX.match(text)):
            cleaned.add(text)
        else:
            bad.append(str(pattern)[:100])
    if bad:
        raise ValidationFailed(
            "Events are action codes like 'promotion.approved' or prefixes like 'promotion.'.",
            details={field_name: [f"Not an event code or prefix: {item!r}." for item in bad]},
        )
    return sorted(cleaned)


def matching_pattern(patterns: Iterable[str], action: str) -> str | None:
    """The first pattern that asks for `action` (the code itself, or a prefix of it), else None."""
    for pattern in patterns:
        if action == pattern or (pattern.endswith(".") and action.startswith(pattern)):
            return pattern
    return None


def matches(patterns: Iterable[str], action: str) -> bool:
    return matching_pattern(patterns, action) is not None
