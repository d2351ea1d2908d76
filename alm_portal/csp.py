"""Content-Security-Policy on every HTML response: scripts and styles from our own static files only.

No inline script anywhere (htmx reads its config from a meta tag with allowEval off, and injects no
indicator styles). ALM_CSP_EXEMPT_PATHS lists path prefixes that keep their own markup (the Swagger
UI of drf-spectacular renders an inline script).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" in response or request.path.startswith(tuple(settings.ALM_CSP_EXEMPT_PATHS)):
            return response
        response["Content-Security-Policy"] = POLICY
        return response
