"""What the signed-in person may reach, for templates: `may.decide`, `may.read_audit`, `may.administer`,
`may.change`, answered by accounts.policy so a template never compares role strings."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from alm_portal.accounts import policy
from alm_portal.accounts.models import User


def _may(request: HttpRequest) -> dict[str, bool]:
    user = request.user
    if not isinstance(user, User):
        return {}
    return {
        "decide": policy.decides_promotions(user),
        "read_audit": policy.reads_audit_log(user),
        "administer": policy.is_admin(user),
        "change": policy.changes_anything(user),
    }


def permissions(request: HttpRequest) -> dict[str, Any]:
    """Lazy: a page that never asks does not load its user for it."""
    return {"may": SimpleLazyObject(lambda: _may(request))}
