"""Reads of the audit log for list pages, the API and exports; newest first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import Max, Q, QuerySet

from alm_portal.audit.canonical import CANONICAL_FIELDS
from alm_portal.audit.models import AuditEvent

# Everything the hash covers plus the hash itself: what verification and export read per row.
CHAIN_COLUMNS: tuple[str, ...] = (*CANONICAL_FIELDS, "hash")


def audit_events(
    *,
    actor_id: int | None = None,
    actor_kind: str | None = None,
    action_prefix: str | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    related_type: str | None = None,
    related_id: str | int | None = None,
    outcome: str | None = None,
    request_id: str | None = None,
    occurred_from: datetime | None = None,
    occurred_before: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Events matching every given filter, newest first (seq descending).

    `action_prefix` matches whole segments: "promotion" finds "promotion.approved", not
    "promotions.x"; a full code ("promotion.approved") matches exactly that action. Several, separated
    by commas, match any of them ("promotion.approval_recorded,promotion.approved": every approval).
    Time bounds are half-open: occurred_from <= occurred_at < occurred_before.
    """
    events = AuditEvent.objects.all()
    if actor_id is not None:
        events = events.filter(actor_id=actor_id)
    if actor_kind:
        events = events.filter(actor_kind=actor_kind)
    if action_prefix:
        wanted = Q()
        for part in action_prefix.split(","):
            prefix = part.strip().rstrip(".")
            if prefix:
                wanted |= Q(action=prefix) | Q(action__startswith=f"{prefix}.")
        events = events.filter(wanted) if wanted else events
    if object_type:
        events = events.filter(object_type=object_type)
    if object_id is not None:
        events = events.filter(object_id=str(object_id))
    if related_type:
        events = events.filter(related_type=related_type)
    if related_id is not None:
        events = events.filter(related_id=str(related_id))
    if outcome:
        events = events.filter(outcome=outcome)
    if request_id:
        events = events.filter(request_id=request_id)
    if occurred_from is not None:
        events = events.filter(occurred_at__gte=occurred_from)
    if occurred_before is not None:
        events = events.filter(occurred_at__lt=occurred_before)
    return events.order_by("-seq")


def audit_recent_actions(*, limit: int) -> list[str]:
    """The action codes among the newest `limit` events, sorted (what the filter suggests)."""
    newest = AuditEvent.objects.order_by("-seq").values_list("action", flat=True)[:limit]
    return sorted(set(newest))


def audit_event_get(*, seq: int) -> AuditEvent | None:
    return AuditEvent.objects.filter(seq=seq).first()


def audit_last_verification() -> AuditEvent | None:
    """The newest `audit.verified` event: what pages show as the state of the chain."""
    return AuditEvent.objects.filter(action="audit.verified").order_by("-seq").first()


def audit_chain_rows(*, from_seq: int, to_seq: int, chunk_size: int) -> Iterator[dict[str, Any]]:
    """Rows from_seq..to_seq in seq order (CHAIN_COLUMNS), `chunk_size` at a time.

    Keyset pages (WHERE seq > last ORDER BY seq LIMIT n) rather than one long server-side cursor:
    memory stays constant on both databases, no transaction stays open for the minutes a big chain
    takes (on SQLite that would block every writer), and it also works behind a transaction-pooling
    proxy where named cursors do not.
    """
    last = from_seq - 1
    while last < to_seq:
        page = list(
            AuditEvent.objects.filter(seq__gt=last, seq__lte=to_seq)
            .order_by("seq")
            .values_list(*CHAIN_COLUMNS)[:chunk_size]
        )
        if not page:
            return
        for values in page:
            yield dict(zip(CHAIN_COLUMNS, values, strict=True))
        last = page[-1][0]


def audit_head_seq() -> int:
    """The newest committed seq (0 for an empty log)."""
    return AuditEvent.objects.aggregate(head=Max("seq"))["head"] or 0


def object_history(*, object_type: str, object_id: str | int) -> QuerySet[AuditEvent]:
    """What happened to one object, newest first: events about it and events that name it as their
    related object (a stage's change for its pipeline, a credential's for its environment)."""
    object_id = str(object_id)
    return AuditEvent.objects.filter(
        Q(object_type=object_type, object_id=object_id) | Q(related_type=object_type, related_id=object_id)
    ).order_by("-seq")
