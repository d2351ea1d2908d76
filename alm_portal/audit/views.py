"""The audit timeline page (auditors and admins): filters, before/after, the last verification."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.apps import apps
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_date
from django.utils.http import urlencode
from django.utils.text import capfirst
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy
from alm_portal.accounts.identity import portal_user
from alm_portal.accounts.models import User
from alm_portal.audit import selectors
from alm_portal.audit.choices import Outcome
from alm_portal.audit.context import AuditContext
from alm_portal.audit_verification.selectors import audit_verification_running
from alm_portal.audit_verification.services import audit_verification_request

PAGE_SIZE = 50
# The apps whose objects the audit log speaks of (their models are the "Object type" choices).
AUDITED_APPS = ("accounts", "audit", "notifications", "environments", "solutions", "deployments")
# Kinds of event people look for that span several action codes, offered under "What" beside the codes
# themselves (the filter takes several codes separated by commas, as the API's `action` does).
ACTION_GROUPS = (
    (
        "Approvals and rejections (every decision)",
        "promotion.approval_recorded,promotion.approved,promotion.auto_approved,promotion.freeze_overridden,"
        "promotion.rejected",
    ),
    ("Promotion outcomes", "promotion.succeeded,promotion.failed,promotion.rolled_back,promotion.cancelled"),
    ("Sign-ins and refusals", "auth,page.denied,api.denied"),
)
RECENT_ACTIONS = 5000


def _object_types() -> list[tuple[str, str]]:
    """(stored type, what people call it) of every model the audit log may name, by name."""
    types = []
    for label in AUDITED_APPS:
        for model in apps.get_app_config(label).get_models():
            types.append((model._meta.label_lower, capfirst(str(model._meta.verbose_name))))
    return sorted(types, key=lambda item: item[1])


def _object_type(value: str, types: list[tuple[str, str]]) -> str:
    """The stored type for what was asked: the stored name itself, or a model's name ("promotion")."""
    wanted = value.strip().casefold()
    for stored, shown in types:
        if wanted in (stored, shown.casefold(), stored.split(".", 1)[1]):
            return stored
    return value.strip()


def _shown(value: Any) -> str:
    """A recorded value as text a person reads: lists joined, objects as key: value, nothing as —."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, list):
        return ", ".join(_shown(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_shown(item)}" for key, item in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def event_changes(event: Any) -> list[dict[str, str]]:
    """Each field an event recorded, with its value before and after (— where it had none)."""
    before = event.before if isinstance(event.before, dict) else {}
    after = event.after if isinstance(event.after, dict) else {}
    names = [*before, *(name for name in after if name not in before)]
    return [{"field": name, "before": _shown(before.get(name)), "after": _shown(after.get(name))} for name in names]


def _day(text: str, *, end: bool = False) -> datetime | None:
    day = parse_date(text or "")
    if day is None:
        return None
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def _require_reader(request: HttpRequest) -> User:
    user: User = portal_user(request)
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
    object_types = _object_types()
    filters = {
        "who": query.get("who", "").strip(),
        "what": query.get("what", "").strip(),
        "object_type": _object_type(query.get("object_type", ""), object_types) if query.get("object_type") else "",
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
    type_names = dict(object_types)
    rows = [
        {
            "event": event,
            "changes": event_changes(event),
            "type_name": type_names.get(event.object_type, event.object_type),
        }
        for event in page.object_list
    ]
    keep = urlencode({key: value for key, value in filters.items() if value})
    return render(
        request,
        "audit/timeline.html",
        {
            "page": page,
            "rows": rows,
            "filters": filters,
            "object_types": object_types,
            "action_groups": ACTION_GROUPS,
            "recent_actions": selectors.audit_recent_actions(limit=RECENT_ACTIONS),
            "keep": keep,
            "outcomes": Outcome.choices,
            "unknown_actor": unknown_actor,
            **_verification_context(),
            "export_csv": _export_url(filters, actor.pk if actor else None, "csv"),
            "export_jsonl": _export_url(filters, actor.pk if actor else None, "jsonl"),
        },
    )


# The verification card asks every 2 s while a verification is waiting or running, and not otherwise.
VERIFICATION_POLL = "2s"


def _verification_context() -> dict[str, Any]:
    running = audit_verification_running()
    return {
        "verification": selectors.audit_last_verification(),
        "verification_job": running,
        "verification_poll": VERIFICATION_POLL if running is not None else "",
    }


@login_required
def audit_verification(request: HttpRequest) -> HttpResponse:
    """The verification card, live (htmx): the running job's progress, then its result."""
    _require_reader(request)
    return render(request, "audit/_verification.html", _verification_context())


@login_required
@require_POST
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Queue a full verification of the chain as a job; its `audit.verified` event becomes the shown result."""
    _require_reader(request)
    job = audit_verification_request(context=AuditContext.from_request(request))
    messages.success(request, f"Verification queued (job {job.pk}); its progress and result appear below.")
    return redirect("audit:timeline")
