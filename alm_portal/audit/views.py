"""The audit timeline page (auditors and admins): filters, before/after, the last verification."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_date
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from alm_portal.audit import selectors
from alm_portal.audit.choices import Outcome
from alm_portal.audit.context import AuditContext
from alm_portal.audit.verification import audit_verification_request

PAGE_SIZE = 50


def _day(text: str, *, end: bool = False) -> datetime | None:
    day = parse_date(text or "")
    if day is None:
        return None
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def _require_reader(request: HttpRequest) -> User:
    user: User = request.user  # type: ignore[assignment]
    if not policy.reads_audit_log(user):
        raise PermissionDenied("The audit log is for auditors and admins.")
    return user


def _export_url(filters: dict[str, str], actor_id: int | None, file_format: str) -> str:
    """The API's streamed export (session-authenticated GET) with the page's filters."""
    query = {
        "file_format": file_format,
        "action": filters["what"],
        "object_type": filters["object_type"],
        "object_id": filters["object_id"],
        "outcome": filters["outcome"],
        "actor": str(actor_id) if actor_id else "",
    }
    since, until = _day(filters["from"]), _day(filters["to"], end=True)
    query["since"] = since.isoformat().replace("+00:00", "Z") if since else ""
    query["until"] = until.isoformat().replace("+00:00", "Z") if until else ""
    return reverse("api:audit:audit-event-export") + "?" + urlencode({k: v for k, v in query.items() if v})


@login_required
def audit_timeline(request: HttpRequest) -> HttpResponse:
    _require_reader(request)
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
            "export_csv": _export_url(filters, actor.pk if actor else None, "csv"),
            "export_jsonl": _export_url(filters, actor.pk if actor else None, "jsonl"),
        },
    )


@login_required
@require_POST
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Queue a full verification of the chain as a job; its `audit.verified` event becomes the shown result."""
    _require_reader(request)
    job = audit_verification_request(context=AuditContext.from_request(request))
    messages.success(request, f"Verification queued (job {job.pk}); its result appears here when it is done.")
    return redirect("audit:timeline")
