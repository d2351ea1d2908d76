"""Sign-in, sign-out and failed sign-in reach the audit log through Django's own auth signals.

Django sends these for every way of signing in (our pages, the admin), so receiving them here is
the one place that sees them all; the receivers only translate and call a service.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from alm_portal.accounts import services
from alm_portal.accounts.backends import LOCKED_OUT_ATTRIBUTE
from alm_portal.accounts.middleware import SESSION_EXPIRED_ATTRIBUTE
from alm_portal.audit.context import AuditContext


@receiver(user_logged_in, dispatch_uid="alm_audit_signed_in")
def _signed_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is None:
        return
    method = getattr(request, "sign_in_method", "password")
    context = AuditContext.for_user(
        user,
        auth_method=f"session:{method}",
        request_id=getattr(request, "request_id", ""),
        client_ip=getattr(request, "client_ip", None),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    services.session_signed_in(user=user, session_key=request.session.session_key or "", context=context, method=method)


@receiver(user_logged_out, dispatch_uid="alm_audit_signed_out")
def _signed_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is None or user is None:
        return
    context = AuditContext.for_user(
        user,
        auth_method="session",
        request_id=getattr(request, "request_id", ""),
        client_ip=getattr(request, "client_ip", None),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    services.session_signed_out(
        user=user,
        session_key=request.session.session_key,
        context=context,
        expired=getattr(request, SESSION_EXPIRED_ATTRIBUTE, ""),
    )


@receiver(user_login_failed, dispatch_uid="alm_audit_sign_in_failed")
def _sign_in_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    username = str(credentials.get("username", ""))
    context = AuditContext(
        actor_id=None,
        actor_display=username[:150],
        actor_kind="user",
        auth_method="session:password",
        request_id=getattr(request, "request_id", "") if request is not None else "",
        client_ip=getattr(request, "client_ip", None) if request is not None else None,
        user_agent=request.META.get("HTTP_USER_AGENT", "") if request is not None else "",
    )
    services.sign_in_failed(
        username=username, context=context, locked_out=bool(getattr(request, LOCKED_OUT_ATTRIBUTE, False))
    )
