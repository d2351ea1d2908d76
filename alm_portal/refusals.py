"""One way to turn a service's refusal (a DomainError) into an answer, for every door.

Services refuse by raising a DomainError with a stable code (alm_portal/errors.py). The API answers it
as `{"error": {"code", "message", "details"}}` (alm_portal/api/exceptions.py builds it here); a page
shows the same message, next to the form field it names when it names one, and audits a denied
attempt as the API does. So the page and the API say the same thing for the same refusal.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.db.models import Model
from django.forms import Form
from django.http import HttpRequest

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record_outcome
from alm_portal.errors import DomainError

logger = logging.getLogger(__name__)


def api_error_body(refusal: DomainError) -> dict[str, Any]:
    """The API's answer to a refusal (docs/api.md lists the codes)."""
    return {"error": {"code": refusal.code, "message": refusal.message, "details": refusal.details}}


def refusal_field_errors(refusal: DomainError) -> dict[str, Any]:
    """The refusal's per-field problems (`details` keyed by field name), or nothing."""
    return refusal.details if isinstance(refusal.details, dict) else {}


def refusal_to_form(form: Form, refusal: DomainError) -> None:
    """Put the refusal's field errors next to the form's fields (its message on top when none fits)."""
    placed = False
    for field, problems in refusal_field_errors(refusal).items():
        if field not in form.fields:
            continue
        for problem in problems if isinstance(problems, list) else [problems]:
            form.add_error(field, str(problem))
            placed = True
    if not placed:
        form.add_error(None, refusal.message)


def refusal_to_page(request: HttpRequest, refusal: DomainError, *, doing: str, target: Model | None = None) -> None:
    """Show a refusal in words on the next page; denied attempts are audited as the API's are."""
    messages.error(request, refusal.message)
    if refusal.status not in (401, 403):
        return
    try:
        record_outcome(
            context=AuditContext.from_request(request),
            action="page.denied",
            outcome="denied",
            message=f"{refusal.code}: {refusal.message}"[:500],
            target=target,
            after={"method": request.method, "path": request.path, "doing": doing},
        )
    except Exception:  # the refusal must still reach the person
        logger.exception("could not audit a refused page action")
