"""Request id and client address for every request, kept where logs and services can reach them."""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Only for log records: business code receives the request id as an argument, never from here.
_current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def new_request_id() -> str:
    return uuid.uuid4().hex


def _client_ip(request: HttpRequest) -> str | None:
    header = settings.ALM_TRUSTED_PROXY_HEADER
    candidate = None
    if header:
        # The trusted proxy appends the address it saw last; earlier entries are client-supplied.
        raw = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        candidate = raw.split(",")[-1].strip() if raw else None
    candidate = candidate or request.META.get("REMOTE_ADDR")
    try:
        return str(ipaddress.ip_address(candidate)) if candidate else None
    except ValueError:
        return None


class RequestIdMiddleware:
    """Attach request.request_id (kept from a trusted X-Request-ID, else new) and request.client_ip."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        if settings.ALM_TRUST_REQUEST_ID and _VALID_REQUEST_ID.match(incoming):
            request_id = incoming
        else:
            request_id = new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_ip = _client_ip(request)  # type: ignore[attr-defined]
        token = _current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _current_request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


def bind_request_id_for_logs(request_id: str) -> contextvars.Token[str]:
    """Used by Celery tasks, which receive the request id explicitly, so their log lines carry it."""
    return _current_request_id.set(request_id or "-")


def reset_request_id_for_logs(token: contextvars.Token[str]) -> None:
    """Undo bind_request_id_for_logs() (the id bound before it is in effect again)."""
    _current_request_id.reset(token)


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current_request_id.get()
        return True
