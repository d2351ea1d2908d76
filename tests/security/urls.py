"""The project's URLs plus views that fail on purpose, for the security tests (ROOT_URLCONF override)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alm_portal.urls import urlpatterns as project_urlpatterns

# Stands in for whatever a bug drags into an exception message (a secret, a SQL fragment...).
EXCEPTION_MARKER = "boom-marker-6b1f"


def page_that_fails(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(f"page failed with {EXCEPTION_MARKER}")


def session_writer(request: HttpRequest) -> HttpResponse:
    """Writes one session value, so the response sets the session cookie."""
    request.session["probe"] = 1
    return HttpResponse(status=204)


def message_writer(request: HttpRequest) -> HttpResponse:
    """Leaves a flash message for the next page, which the cookie storage keeps in a cookie."""
    messages.info(request, "Saved.")
    return HttpResponse(status=204)


class ApiThatFails(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise RuntimeError(f"api failed with {EXCEPTION_MARKER}")

    def post(self, request: Request) -> Response:
        raise RuntimeError(f"api failed with {EXCEPTION_MARKER} after reading {sorted(request.data)}")


urlpatterns = [
    *project_urlpatterns,
    path("security-probe/fail/", page_that_fails),
    path("security-probe/session/", session_writer),
    path("security-probe/message/", message_writer),
    path("api/v1/security-probe/fail/", ApiThatFails.as_view()),
]

handler500 = "alm_portal.server_errors.server_error"
