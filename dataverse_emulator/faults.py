"""Fault injection per org, set through the admin API (``POST /_emulator/orgs/<org>/faults``) and kept
in the state file, so a restarted emulator keeps misbehaving the same way.

Kinds (each optional; ``count`` = for the next N requests/imports, ``seconds`` = for the next T seconds):
    throttle              {"code": "requests"|"execution_time"|"concurrency"|"0x80072322", "retry_after": 5,
                           "count": N, "seconds": T}  → 429 + Retry-After + the service-protection error (ref 1.5)
    server_errors         {"status": 503, "count": N}  → the next N Web API responses are 5xx
    delay                 {"seconds": 2.5, "count": N}  → responses are held back (all while set, or N of them)
    drop_after_import     {"count": N}  → an import is accepted (and proceeds) but the connection is reset
    import_failure        {"code": "0x80048033", "message": "…", "count": N}  → the next import(s) fail
    import_never_finishes {"count": N}  → the next async import(s) stay "In Progress" until cancelled
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import errors, unconfirmed
from .errors import DataverseError

KINDS = ("throttle", "server_errors", "delay", "drop_after_import", "import_failure", "import_never_finishes")


def normalise(spec: dict[str, Any], t: float) -> dict[str, Any]:
    """Validate an admin fault spec and turn relative ``seconds`` into an absolute ``until``."""
    result: dict[str, Any] = {}
    for kind, value in spec.items():
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        if value is None:
            result[kind] = None
            continue
        if not isinstance(value, dict):
            raise ValueError(f"fault {kind!r} must be an object")
        entry = dict(value)
        if "count" in entry:
            entry["remaining"] = int(entry.pop("count"))
        if kind == "throttle":
            code = str(entry.get("code", "requests"))
            entry["code"] = errors.THROTTLE_ALIASES.get(code, code)
            if entry["code"] not in errors.THROTTLE_MESSAGES:
                raise ValueError(f"unknown throttle code {code!r}")
            entry["retry_after"] = int(entry.get("retry_after", 5))
            if "seconds" in entry:
                entry["until"] = t + float(entry.pop("seconds"))
        if kind == "server_errors":
            entry["status"] = int(entry.get("status", 503))
        if kind == "delay":
            entry["seconds"] = float(entry.get("seconds", 1.0))
        if kind == "import_failure":
            entry["code"] = str(entry.get("code", errors.IMPORT_SOLUTION_ERROR))
            entry["message"] = str(entry.get("message", errors.IMPORT_SOLUTION_ERROR_MESSAGE))
        result[kind] = entry
    return result


def _active(entry: dict[str, Any] | None, t: float) -> bool:
    if not entry:
        return False
    if "remaining" in entry and entry["remaining"] <= 0:
        return False
    return not ("until" in entry and t >= entry["until"])


def _consume(faults: dict[str, Any], kind: str) -> None:
    entry = faults.get(kind)
    if entry and "remaining" in entry:
        entry["remaining"] -= 1
        if entry["remaining"] <= 0:
            faults.pop(kind, None)


@dataclass
class RequestFaults:
    """What to do to one Web API request before handling it."""

    delay: float = 0.0
    error: DataverseError | None = None


def for_request(faults: dict[str, Any], t: float) -> RequestFaults:
    """Decide (and consume) the request-level faults: delay, 5xx, throttling. Caller holds the store lock."""
    decision = RequestFaults()
    if _active(faults.get("delay"), t):
        decision.delay = float(faults["delay"]["seconds"])
        _consume(faults, "delay")
    if _active(faults.get("server_errors"), t):
        status = faults["server_errors"]["status"]
        decision.error = DataverseError(status, unconfirmed.SERVER_ERROR_CODE, unconfirmed.SERVER_ERROR_MESSAGE)
        _consume(faults, "server_errors")
        return decision
    if _active(faults.get("throttle"), t):
        entry = faults["throttle"]
        decision.error = DataverseError(
            429,
            entry["code"],
            errors.THROTTLE_MESSAGES[entry["code"]],
            headers={"Retry-After": str(entry["retry_after"])},
        )
        _consume(faults, "throttle")
    elif faults.get("throttle") and not _active(faults.get("throttle"), t):
        faults.pop("throttle", None)
    return decision


def take_import_fault(faults: dict[str, Any], kind: str, t: float) -> dict[str, Any] | None:
    """Consume one ``import_failure`` / ``import_never_finishes`` / ``drop_after_import`` if armed."""
    entry = faults.get(kind)
    if not _active(entry, t):
        return None
    assert entry is not None
    snapshot = dict(entry)
    _consume(faults, kind)
    return snapshot
