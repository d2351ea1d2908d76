"""The one API error shape: {"error": {"code", "message", "details"}} (docs/api.md)."""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from alm_portal.audit.context import AuditContext
from alm_portal.audit.denials import denied_request_tally
from alm_portal.audit.services import record_outcome
from alm_portal.errors import DomainError
from alm_portal.limits import throttling
from alm_portal.refusals import api_error_body

logger = logging.getLogger(__name__)


def _code_for(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "validation_error"
    if isinstance(exc, exceptions.NotAuthenticated):
        return "not_authenticated"
    if isinstance(exc, exceptions.AuthenticationFailed):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "not_authenticated"
        return code if code in ("token_expired", "token_revoked") else "not_authenticated"
    if isinstance(exc, exceptions.NotFound):
        return "not_found"
    if isinstance(exc, exceptions.PermissionDenied):
        codes = exc.get_codes()
        return codes if isinstance(codes, str) and codes != "permission_denied" else "permission_denied"
    if isinstance(exc, exceptions.Throttled):
        return "throttled"
    if isinstance(exc, exceptions.MethodNotAllowed):
        return "method_not_allowed"
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return "unsupported_media_type"
    if isinstance(exc, exceptions.ParseError):
        return "parse_error"
    return str(exc.default_code)


def _message_for(exc: exceptions.APIException) -> tuple[str, Any]:
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        details = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        return "The request is not valid.", details
    detail = exc.detail
    if isinstance(detail, list | dict):
        return "The request could not be processed.", detail
    return str(detail), {}


def _throttled(wait: float) -> Response:
    response = Response(
        {
            "error": {
                "code": "throttled",
                "message": "Too many requests; try again later.",
                "details": {"retry_after": max(1, math.ceil(wait))},
            }
        },
        status=status.HTTP_429_TOO_MANY_REQUESTS,
    )
    response["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _tally_unauthenticated(request: Any, *, code: str) -> None:
    """One refused request without a signed-in caller: counted, and audited once per client and window."""
    try:
        denied_request_tally(
            client_ip=getattr(request, "client_ip", None),
            code=code,
            method=request.method or "",
            path=request.path,
            user_agent=request.META.get("HTTP_USER_AGENT", "") or "",
            request_id=getattr(request, "request_id", "") or "",
        )
    except Exception:  # the refusal itself must still reach the caller
        logger.exception("could not count a refused API request")


def _audit_refusal(
    context: dict[str, Any], *, code: str, message: str, status_code: int, credentials_refused: bool
) -> Response | None:
    """Count and audit a 401 or 403; a 429 to send instead when the caller is over its throttle."""
    request = context.get("request")
    if request is None:
        return None
    if not request.user.is_authenticated:
        # No signed-in caller (no credentials, or refused ones): throttled per address, audited in aggregate.
        presented = credentials_refused or bool(request.META.get("HTTP_AUTHORIZATION"))
        scope = throttling.FAILED_AUTHENTICATION if presented else throttling.ANONYMOUS
        verdict = throttling.take_once(scope, throttling.client_of(request), request)
        _tally_unauthenticated(request, code=code if verdict.allowed else "throttled")
        return None if verdict.allowed else _throttled(verdict.wait)
    # A signed-in caller's refusal is evidence: one event each, within the caller's own rate.
    verdict = throttling.take_once(throttling.USER, str(request.user.pk), request)
    if not verdict.allowed:
        return _throttled(verdict.wait)
    try:
        audit_context = AuditContext.from_request(request)
        record_outcome(
            context=audit_context,
            action="api.denied",
            outcome="denied",
            message=f"{code}: {message}"[:500],
            after={"method": request.method, "path": request.path, "status": status_code},
        )
    except Exception:  # the refusal itself must still reach the caller
        logger.exception("could not audit a refused API request")
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        if exc.status in (401, 403):
            refused_credentials = exc.status == 401
            throttled = _audit_refusal(
                context,
                code=exc.code,
                message=exc.message,
                status_code=exc.status,
                credentials_refused=refused_credentials,
            )
            if throttled is not None:
                return throttled
        response = Response(api_error_body(exc), status=exc.status)
        if exc.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="alm-portal"'
        if exc.status == 429 and isinstance(exc.details, dict) and "retry_after" in exc.details:
            response["Retry-After"] = str(exc.details["retry_after"])
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    code = _code_for(exc)
    message, details = _message_for(exc)
    if response.status_code in (401, 403):
        throttled = _audit_refusal(
            context,
            code=code,
            message=message,
            status_code=response.status_code,
            credentials_refused=isinstance(exc, exceptions.AuthenticationFailed),
        )
        if throttled is not None:
            return throttled
    request = context.get("request")
    if isinstance(exc, exceptions.Throttled) and request is not None and not request.user.is_authenticated:
        _tally_unauthenticated(request, code="throttled")
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        details = {"retry_after": int(exc.wait)}
    response.data = {"error": {"code": code, "message": message, "details": details}}
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = 'Bearer realm="alm-portal"'
    return response
