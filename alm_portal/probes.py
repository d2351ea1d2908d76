"""Liveness and readiness endpoints for load balancers and orchestrators."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from kombu import Connection


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and answering; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return None


def _broker_ok() -> str | None:
    try:
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        with Connection(settings.CELERY_BROKER_URL, transport_options=options, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return None


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the broker answer; 503 names the part that does not."""
    failures = {name: problem for name, problem in (("database", _database_ok()), ("broker", _broker_ok())) if problem}
    if failures:
        return JsonResponse({"status": "unavailable", "failing": sorted(failures), "errors": failures}, status=503)
    return JsonResponse({"status": "ready"})
