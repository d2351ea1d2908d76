"""What a notification says: the webhook JSON and the email text, both built from one audit event.

`after` comes from the audit row, which audit.record() already scrubbed of secrets; nothing else
from the event's context (IP address, user agent, hashes) is sent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from alm_portal.audit.models import AuditEvent

SUBJECT_PREFIX = "[ALM Portal]"


def rfc3339(moment: datetime) -> str:
    """UTC with microseconds and `Z`, the API's time format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ref(kind: str, object_id: str, text: str) -> dict[str, str] | None:
    if not kind:
        return None
    return {"type": kind, "id": object_id, "repr": text}


def event_payload(event: AuditEvent, *, event_name: str | None = None) -> dict[str, Any]:
    """The webhook body as data: {id, event, occurred_at, data}. `id` is the audit seq of the event,
    the same for every endpoint that receives it (the X-ALM-Delivery header names the delivery)."""
    return {
        "id": event.seq,
        "event": event_name or event.action,
        "occurred_at": rfc3339(event.occurred_at),
        "data": {
            "object": _ref(event.object_type, event.object_id, event.object_repr),
            "related": _ref(event.related_type, event.related_id, event.related_repr),
            "after": event.after if event.after is not None else {},
            "actor": event.actor_display,
            "outcome": event.outcome,
            "message": event.message,
        },
    }


def payload_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are sent and signed: compact JSON with sorted keys, UTF-8. The same
    payload always gives the same bytes, so every retry carries an identical body."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def email_subject(event: AuditEvent) -> str:
    about = event.object_repr or event.related_repr or event.object_type
    return _one_line(f"{SUBJECT_PREFIX} {event.action}: {about}")[:200]


def email_body(event: AuditEvent, *, pattern: str) -> str:
    """Plain text: what happened, to what, by whom, the recorded details, and why you got it."""
    lines = [
        f"Event:    {event.action}",
        f"When:     {rfc3339(event.occurred_at)}",
        f"By:       {event.actor_display or 'system'}",
    ]
    if event.object_type:
        lines.append(f"Object:   {_one_line(event.object_repr)} ({event.object_type} {event.object_id})")
    if event.related_type:
        lines.append(f"Related:  {_one_line(event.related_repr)} ({event.related_type} {event.related_id})")
    if event.outcome != "success":
        lines.append(f"Outcome:  {event.outcome}")
    if event.message:
        lines.append(f"Message:  {_one_line(event.message)}")
    if event.after:
        lines.append("")
        lines.append("Details:")
        for key, value in sorted(event.after.items()):
            shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
            lines.append(f"  {key}: {_one_line(shown)[:500]}")
    lines += [
        "",
        f"Audit event #{event.seq}.",
        f"You receive this because you subscribed to '{pattern}'. Change it at /api/v1/me/notifications/.",
    ]
    return "\n".join(lines) + "\n"
