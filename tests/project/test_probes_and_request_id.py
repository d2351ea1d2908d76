from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ready"


def test_readyz_names_the_broker_when_it_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1, "max_retries": 0}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]


def test_every_response_gets_a_new_request_id(client):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert first and second and first != second


def test_incoming_request_id_is_ignored_unless_trusted(client, settings):
    settings.ALM_TRUST_REQUEST_ID = False
    assert client.get("/healthz", HTTP_X_REQUEST_ID="from-the-client-123")["X-Request-ID"] != "from-the-client-123"
    settings.ALM_TRUST_REQUEST_ID = True
    assert client.get("/healthz", HTTP_X_REQUEST_ID="from-the-proxy-123")["X-Request-ID"] == "from-the-proxy-123"
    # Even from a trusted proxy, junk is replaced rather than copied into logs.
    assert client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-ID"] != "bad id\nwith newline"


def test_request_id_reaches_the_audit_event(client, maker):
    from alm_portal.audit.models import AuditEvent

    response = client.post("/accounts/login/", {"username": "maker", "password": "correct-horse-battery"})
    assert response.status_code == 302
    event = AuditEvent.objects.filter(action="auth.signed_in").latest("seq")
    assert event.request_id == response["X-Request-ID"]
    assert event.client_ip == "127.0.0.1"


def test_forwarded_for_is_ignored_without_a_trusted_proxy(client, maker, settings):
    from alm_portal.audit.models import AuditEvent

    settings.ALM_TRUSTED_PROXY_HEADER = None
    client.post("/accounts/login/", {"username": "maker", "password": "x"}, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert AuditEvent.objects.filter(action="auth.sign_in_failed").latest("seq").client_ip == "127.0.0.1"
    settings.ALM_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    client.post(
        "/accounts/login/", {"username": "maker", "password": "x"}, HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.9"
    )
    assert AuditEvent.objects.filter(action="auth.sign_in_failed").latest("seq").client_ip == "203.0.113.9"
