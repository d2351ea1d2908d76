"""API permission: the request's scopes (token scopes, or the role's for a session) must cover the view's."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from alm_portal.accounts import policy
from alm_portal.accounts.choices import Scope


class ScopeInsufficient(exceptions.PermissionDenied):
    default_code = "scope_insufficient"


def required_scope(view: Any, method: str) -> str:
    """Views declare `required_scopes = {"GET": "read", "POST": "request"}`; unsafe methods default to admin."""
    declared: dict[str, str] = getattr(view, "required_scopes", {})
    action = getattr(view, "action", None)
    per_action: dict[str, str] = getattr(view, "action_scopes", {})
    if action and action in per_action:
        return per_action[action]
    if method in declared:
        return declared[method]
    return Scope.READ if method in SAFE_METHODS else Scope.ADMIN


class ScopedRolePermission(BasePermission):
    """The endpoint's scope, asked of accounts.policy.scope_refusal (the check the services use too)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            raise exceptions.NotAuthenticated("Authentication credentials were not provided.")
        scope = required_scope(view, request.method or "GET")
        token = request.auth if request.auth is not None and hasattr(request.auth, "scopes") else None
        refusal = policy.scope_refusal(user=user, token=token, scope=scope)
        if refusal is None:
            return True
        if refusal.code == ScopeInsufficient.default_code:
            raise ScopeInsufficient(refusal.message)
        raise exceptions.PermissionDenied(refusal.message)
