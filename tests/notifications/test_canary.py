"""A recognisable webhook secret goes in once and must never come out: not in API responses, audit
rows, log records, error reports, delivery rows, what the receiver gets, or any database column."""

from __future__ import annotations

import json
import logging

import pytest
from django.views.debug import ExceptionReporter

from alm_portal.audit.models import AuditEvent
from alm_portal.notifications import services
from alm_portal.notifications.models import WebhookDelivery, WebhookEndpoint
from alm_portal.notifications.signing import verify_signature
from tests.notifications.conftest import emit
from tests.support.database import columns_containing

pytestmark = pytest.mark.django_db

CANARY = "WebhookCanary~5e1f-DoNotLeak-c93a"
SECOND_CANARY = "WebhookCanary~77b2-AlsoSecret-0d4e"


def test_the_webhook_secret_never_leaks(api_client, admin_user, receiver, environment, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    api_client.force_authenticate(user=admin_user)
    bodies: list[str] = []

    def keep(response):
        bodies.append(response.content.decode("utf-8", "replace"))
        return response

    body = {"name": "canary", "url": receiver.url, "events": ["drift."], "secret": CANARY}
    created = keep(api_client.post("/api/v1/webhooks/", body, format="json"))
    assert created.status_code == 201
    pk = created.json()["id"]

    # A delivery that works, signed with the first secret.
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    first = WebhookDelivery.objects.get(endpoint_id=pk)
    assert services.webhook_delivery_attempt(delivery_id=first.pk).status == "delivered"
    assert verify_signature(
        secret=CANARY, header=receiver.received[0].headers["X-ALM-Signature"], body=receiver.received[0].body
    )

    # Rotate to the second secret; a ping that fails (500), then one that works.
    assert (
        keep(api_client.patch(f"/api/v1/webhooks/{pk}/", {"secret": SECOND_CANARY}, format="json")).status_code == 200
    )
    ping = keep(api_client.post(f"/api/v1/webhooks/{pk}/test/")).json()["delivery"]
    receiver.answer(500)
    assert services.webhook_delivery_attempt(delivery_id=ping["id"]).status == "pending"
    later = WebhookDelivery.objects.get(pk=ping["id"]).next_attempt_at
    assert services.webhook_delivery_attempt(delivery_id=ping["id"], now=later).status == "delivered"
    assert verify_signature(
        secret=SECOND_CANARY, header=receiver.received[-1].headers["X-ALM-Signature"], body=receiver.received[-1].body
    )

    # Every read.
    for path in ("/api/v1/webhooks/", f"/api/v1/webhooks/{pk}/", f"/api/v1/webhooks/{pk}/deliveries/"):
        keep(api_client.get(path))
    # A refused change and a refused creation carry the secret in the request.
    keep(
        api_client.patch(
            f"/api/v1/webhooks/{pk}/", {"secret": SECOND_CANARY, "url": "http://x.example.com"}, format="json"
        )
    )
    keep(api_client.post("/api/v1/webhooks/", {**body, "name": "again", "url": "https://10.0.0.1/x"}, format="json"))

    # A crash deep in the service while the secret is in the request: the 500, and the error report
    # Django would mail to ADMINS (every frame's local variables).
    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(WebhookEndpoint.objects, "create", explode)
    api_client.raise_request_exception = False
    crashed = api_client.post("/api/v1/webhooks/", {**body, "name": "boom", "secret": SECOND_CANARY}, format="json")
    assert keep(crashed).status_code == 500
    monkeypatch.undo()
    crashes = [r for r in caplog.records if r.name == "django.request" and r.exc_info and hasattr(r, "request")]
    assert len(crashes) == 1
    reporter = ExceptionReporter(crashes[0].request, *crashes[0].exc_info, is_email=True)
    text, html = reporter.get_traceback_text(), reporter.get_traceback_html()
    assert "database went away" in text
    bodies += [text, html]

    for canary in (CANARY, SECOND_CANARY):
        leaks = [index for index, text in enumerate(bodies) if canary in text]
        assert leaks == [], f"responses {leaks} contain the secret"
        logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
        assert canary not in logged, "a log record contains the secret"
        for event in AuditEvent.objects.all():
            row = json.dumps({field.name: getattr(event, field.attname) for field in event._meta.fields}, default=str)
            assert canary not in row, f"audit event {event.seq} ({event.action}) contains the secret"
        for request in receiver.received:
            assert canary.encode() not in request.body and canary not in str(request.headers)
        assert columns_containing(canary) == []
    assert AuditEvent.objects.get(action="webhook.updated").after == {"shared_key_changed": True}
