"""The history tab of object pages: one page of an object's audit events, shaped for the shared template.

Everyone who may see an object sees what happened to it (who, what, when, outcome, which fields changed);
the values before and after, the client address and the user agent stay on the audit page for auditors
and admins, who get a link there.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Model
from django.urls import reverse
from django.utils.http import urlencode

from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from alm_portal.audit import selectors

HISTORY_PAGE_SIZE = 25
HISTORY_PAGE_PARAMETER = "history_page"
OUTCOME_TONE = {"success": "ok", "denied": "bad", "failed": "bad"}


def _changed_fields(before: Any, after: Any) -> list[str]:
    keys: set[str] = set()
    for values in (before, after):
        if isinstance(values, dict):
            keys |= {str(key) for key in values}
    return sorted(keys)


def object_history_context(*, user: User, instance: Model, page_number: str | None) -> dict[str, Any]:
    """{history: page of rows, history_audit_link: the audit page filtered to the object or ""}."""
    meta = instance._meta
    object_type = f"{meta.app_label}.{meta.model_name}"
    events = selectors.object_history(object_type=object_type, object_id=instance.pk)
    page: Page[Any] = Paginator(events, HISTORY_PAGE_SIZE).get_page(page_number)
    own = str(instance.pk)
    page.object_list = [
        {
            "seq": event.seq,
            "at": event.occurred_at,
            "action": event.action,
            "actor": event.actor_display or event.actor_kind,
            "outcome": event.outcome,
            "tone": OUTCOME_TONE.get(event.outcome, "muted"),
            "message": event.message,
            # Events that only name this object as related say what they were about.
            "about": "" if (event.object_type == object_type and event.object_id == own) else event.object_repr,
            "changed": _changed_fields(event.before, event.after),
        }
        for event in page.object_list
    ]
    reader = policy.reads_audit_log(user)
    link = reverse("audit:timeline") + "?" + urlencode({"object_type": object_type, "object_id": own}) if reader else ""
    return {"history": page, "history_audit_link": link, "history_parameter": HISTORY_PAGE_PARAMETER}
