"""The approvals inbox: promotions waiting for a decision the signed-in person may make."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.identity import portal_user
from alm_portal.accounts.models import User
from deployments import selectors
from deployments.models import Promotion

PREFLIGHT_TONE = {"blocked": "bad", "warnings": "warn", "passed": "ok"}


def _deletes_data(promotion: Promotion) -> bool:
    """Pre-flight found custom tables or columns whose data the import would delete."""
    result = promotion.preflight_result if isinstance(promotion.preflight_result, dict) else {}
    return any((check.get("details") or {}).get("data_loss") for check in result.get("checks") or [])


@login_required
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    user: User = portal_user(request)
    if not account_policy.decides_promotions(user):
        raise PermissionDenied("The approvals inbox is for approvers and admins.")
    rows = [
        {
            "promotion": promotion,
            "preflight": promotion.get_preflight_status_display(),
            "preflight_tone": PREFLIGHT_TONE.get(promotion.preflight_status, ""),
            "production": promotion.target_environment.kind == "production",
            "data_loss": _deletes_data(promotion),
            "waiting_since": promotion.requested_at,
        }
        for promotion in selectors.approvals_waiting_for(user=user)
    ]
    return render(request, "deployments/approvals_inbox.html", {"rows": rows})
