"""The audit timeline page (auditors and admins): filters, before/after, the last verification."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_date
from django.utils.http import urlencode

from alm_portal.accounts.choices import Role
from alm_portal.accounts.models import User
from alm_portal.audit import selectors
from alm_portal.audit.choices import Outcome

PAGE_SIZE = 50


def _day(text: str, *, end: bool = False) -> datetime | None:
    day = parse_date(text or "")
    if day is None:
        return None
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


@login_required
def audit_timeline(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    if not user.is_active or user.role not in (Role.AUDITOR, Role.ADMIN):
        raise PermissionDenied("The audit log is for auditors and admins.")
    query = request.GET
    actor = User.objects.filter(username=query.get("who", "").strip()).only("pk").first() if query.get("who") else None
    filters = {
        "who": query.get("who", "").strip(),
        "what": query.get("what", "").strip(),
        "object_type": query.get("object_type", "").strip(),
        "object_id": query.get("object_id", "").strip(),
        "outcome": query.get("outcome", "") if query.get("outcome", "") in Outcome.values else "",
        "from": query.get("from", ""),
        "to": query.get("to", ""),
    }
    unknown_actor = bool(filters["who"]) and actor is None
    events = selectors.audit_events(
        actor_id=actor.pk if actor else None,
        action_prefix=filters["what"] or None,
        object_type=filters["object_type"] or None,
        object_id=filters["object_id"] or None,
        outcome=filters["outcome"] or None,
        occurred_from=_day(filters["from"]),
        occurred_before=_day(filters["to"], end=True),
    )
    if unknown_actor:
        events = events.none()
    page = Paginator(events, PAGE_SIZE).get_page(query.get("page"))
    keep = urlencode({key: value for key, value in filters.items() if value})
    return render(
        request,
        "audit/timeline.html",
        {
            "page": page,
            "filters": filters,
            "keep": keep,
            "outcomes": Outcome.choices,
            "unknown_actor": unknown_actor,
            "verification": selectors.audit_last_verification(),
        },
    )
