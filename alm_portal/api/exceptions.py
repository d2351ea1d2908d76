"""The one API error shape: {"error": {"code", "message", "details"}} (docs/api.md)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record_outcome
from alm_portal.errors import DomainError

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


def _audit_refusal(context: dict[str, Any], *, code: str, message: str, status_code: int) -> None:
    request = context.get("request")
    if request is None:
        return
    has_credentials = bool(request.META.get("HTTP_AUTHORIZATION")) or request.user.is_authenticated
    if status_code == 401 and not has_credentials:
        return  # an anonymous probe is not an attempt by anybody
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


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        if exc.status in (401, 403):
            _audit_refusal(context, code=exc.code, message=exc.message, status_code=exc.status)
        response = Response(
            {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}, status=exc.status
        )
        if exc.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="alm-portal"'
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
        _audit_refusal(context, code=code, message=message, status_code=response.status_code)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        details = {"retry_after": int(exc.wait)}
    response.data = {"error": {"code": code, "message": message, "details": details}}
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = 'Bearer realm="alm-portal"'
    return response
