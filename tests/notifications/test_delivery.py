"""Webhook delivery over real HTTPS to a local receiver: signed so the receiver can check it,
retried with backoff, stopped by 410, given up after a day, and never sent to a refused address."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from alm_portal.audit.models import AuditEvent
from alm_portal.notifications import services
from alm_portal.notifications.models import WebhookDelivery
from alm_portal.notifications.signing import verify_signature
from tests.notifications.conftest import RECEIVER_SECRET, emit

pytestmark = pytest.mark.django_db


def _one_delivery(receiver, make_endpoint, environment, **endpoint_options):
    endpoint = make_endpoint(receiver.url, **endpoint_options)
    emit("drift.detected", target=environment, after={"kind": "unexpected_version", "unique_name": "ContosoCore"})
    report = services.notifications_dispatch()
    assert report.webhook_deliveries == 1
    return endpoint, WebhookDelivery.objects.get(endpoint=endpoint)


def test_the_receiver_can_verify_the_signature_and_read_the_event(receiver, make_endpoint, environment, admin_user):
    _, delivery = _one_delivery(receiver, make_endpoint, environment)

    outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk)

    assert outcome.status == "delivered" and outcome.status_code == 200
    [request] = receiver.received
    assert request.path == "/hooks/alm"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "ALM-Portal"
    assert request.headers["X-ALM-Event"] == "drift.detected"
    assert request.headers["X-ALM-Delivery"] == str(delivery.pk)
    # What a receiver does, written out without our helper: t=<unix>,v1=<hex hmac of "t.body">.
    parts = dict(part.split("=", 1) for part in request.headers["X-ALM-Signature"].split(","))
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = hmac.new(RECEIVER_SECRET.encode(), parts["t"].encode() + b"." + request.body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())
    assert verify_signature(secret=RECEIVER_SECRET, header=request.headers["X-ALM-Signature"], body=request.body)
    assert not verify_signature(
        secret="another-secret-entirely", header=request.headers["X-ALM-Signature"], body=request.body
    )
    assert not verify_signature(
        secret=RECEIVER_SECRET, header=request.headers["X-ALM-Signature"], body=request.body + b" "
    )

    body = request.json()
    event = AuditEvent.objects.get(action="drift.detected")
    assert set(body) == {"id", "event", "occurred_at", "data"}
    assert body["id"] == event.seq and body["event"] == "drift.detected"
    assert body["occurred_at"].endswith("Z")
    assert body["data"]["object"] == {
        "type": "environments.environment",
        "id": str(environment.pk),
        "repr": "contoso-test",
    }
    assert body["data"]["after"] == {"kind": "unexpected_version", "unique_name": "ContosoCore"}
    assert body["data"]["actor"] == "system"

    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.last_status_code == 200
    assert delivery.delivered_at is not None and delivery.last_error == ""


def test_server_errors_are_retried_with_growing_jittered_delays_then_delivered(receiver, make_endpoint, environment):
    _, delivery = _one_delivery(receiver, make_endpoint, environment)
    receiver.answer(500, 503)
    start = timezone.now()

    first = services.webhook_delivery_attempt(delivery_id=delivery.pk, now=start)
    delivery.refresh_from_db()
    assert first.status == "pending" and delivery.last_status_code == 500 and delivery.last_error == "HTTP 500."
    first_delay = (delivery.next_attempt_at - start).total_seconds()
    assert 15 <= first_delay <= 30

    # Not due yet: asking again (a duplicate message, the sweep) sends nothing.
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=start).sent is False
    assert len(receiver.received) == 1

    second_at = delivery.next_attempt_at
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=second_at).status == "pending"
    delivery.refresh_from_db()
    second_delay = (delivery.next_attempt_at - second_at).total_seconds()
    assert 30 <= second_delay <= 60 and delivery.last_status_code == 503

    third = services.webhook_delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    assert third.status == "delivered"
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.status == "delivered"

    # Every attempt carried the same delivery id and body, each freshly and validly signed.
    assert len(receiver.received) == 3
    assert {r.headers["X-ALM-Delivery"] for r in receiver.received} == {str(delivery.pk)}
    assert len({r.body for r in receiver.received}) == 1
    for request in receiver.received:
        assert verify_signature(secret=RECEIVER_SECRET, header=request.headers["X-ALM-Signature"], body=request.body)


def test_backoff_grows_exponentially_and_is_capped_at_an_hour():
    for attempts, ceiling in [(1, 30), (2, 60), (3, 120), (5, 480), (8, 3600), (30, 3600)]:
        delays = [services.retry_delay(attempts).total_seconds() for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jitter


def test_410_gone_switches_the_endpoint_off_and_is_audited(receiver, make_endpoint, environment):
    endpoint, delivery = _one_delivery(receiver, make_endpoint, environment)
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    later = WebhookDelivery.objects.filter(endpoint=endpoint).exclude(pk=delivery.pk).get()
    receiver.answer(410)

    outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk)

    assert outcome.status == "failed" and outcome.status_code == 410
    endpoint.refresh_from_db()
    assert endpoint.is_active is False and "410" in endpoint.disabled_reason and endpoint.disabled_at is not None
    disabled = AuditEvent.objects.get(action="webhook.disabled")
    assert disabled.object_id == str(endpoint.pk) and disabled.actor_kind == "worker"
    assert disabled.after == {"is_active": False, "reason": "The receiver answered 410 Gone."}
    # The queued delivery is not sent to a switched-off endpoint, and new events make no deliveries.
    assert services.webhook_delivery_attempt(delivery_id=later.pk).status == "failed"
    later.refresh_from_db()
    assert later.last_error == "The endpoint is switched off."
    emit("drift.detected", target=environment)
    assert services.notifications_dispatch().webhook_deliveries == 0
    assert len(receiver.received) == 1


def test_a_delivery_still_failing_after_24_hours_is_marked_failed(receiver, make_endpoint, environment):
    _, delivery = _one_delivery(receiver, make_endpoint, environment)
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=now - timedelta(hours=23, minutes=59, seconds=50))
    receiver.answer(500)

    outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk, now=now)

    assert outcome.status == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_status_code == 500
    assert delivery.last_error == "HTTP 500. Gave up after 24 h."
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(hours=2)).sent is False


def test_a_retry_whose_worker_came_back_after_the_window_is_not_sent(receiver, make_endpoint, environment):
    _, delivery = _one_delivery(receiver, make_endpoint, environment)
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        created_at=now - timedelta(hours=25), attempts=3, next_attempt_at=now - timedelta(hours=20)
    )
    outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk, now=now)
    assert outcome.status == "failed" and receiver.received == []


def test_the_retry_window_follows_the_setting(receiver, make_endpoint, environment, settings):
    settings.ALM_NOTIFICATION_RETRY_HOURS = 1
    _, delivery = _one_delivery(receiver, make_endpoint, environment)
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=now - timedelta(minutes=59, seconds=50))
    receiver.answer(502)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=now).status == "failed"


def test_delivered_twice_sends_once(receiver, make_endpoint, environment):
    _, delivery = _one_delivery(receiver, make_endpoint, environment)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk).status == "delivered"
    again = services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert again.sent is False and again.status == "delivered"
    assert len(receiver.received) == 1


def test_a_connection_that_fails_is_retried_with_a_short_reason(make_endpoint, environment, settings):
    # A port nobody listens on (bind, read the port, close).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = make_endpoint(f"https://127.0.0.1:{port}/hooks/alm")
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert outcome.status == "pending"
    delivery.refresh_from_db()
    # Loopback mode records no reason (tests/notifications/test_loopback_port_scan.py); describe_failure
    # says "Connection refused." for a public receiver.
    assert delivery.last_error == services.delivery.LOOPBACK_NO_ANSWER and delivery.last_status_code is None


def test_an_untrusted_certificate_is_not_accepted(receiver, make_endpoint, environment, settings):
    settings.ALM_WEBHOOK_CA_BUNDLE = None  # the public CAs do not know the receiver's CA
    _, delivery = _one_delivery(receiver, make_endpoint, environment)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk).status == "pending"
    delivery.refresh_from_db()
    assert delivery.last_error == services.delivery.LOOPBACK_NO_ANSWER  # loopback mode: no reason recorded
    assert receiver.received == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("10.0.0.5", "10.0.0.5 is not a public address"),
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ],
)
def test_a_name_that_resolves_to_a_refused_address_is_never_connected(
    make_endpoint, environment, monkeypatch, settings, address, reason
):
    endpoint = make_endpoint("https://hooks.example.com/alm")
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    settings.ALM_ALLOW_LOOPBACK = False

    def lying_dns(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    connects = []
    monkeypatch.setattr(socket, "getaddrinfo", lying_dns)
    monkeypatch.setattr(socket.socket, "connect", lambda self, where: connects.append(where))

    outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk)

    assert outcome.status == "pending" and connects == []
    delivery.refresh_from_db()
    assert delivery.last_error.startswith("Refused by the outbound policy: hooks.example.com resolves to a refused")
    assert reason in delivery.last_error


def test_a_url_the_policy_no_longer_allows_fails_without_a_request(receiver, make_endpoint, environment, settings):
    _, delivery = _one_delivery(receiver, make_endpoint, environment)
    settings.ALM_ALLOW_LOOPBACK = False
    outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert outcome.status == "failed"
    delivery.refresh_from_db()
    assert delivery.last_error == "Refused by the outbound policy: Loopback addresses are not allowed here."
    assert receiver.received == []


def test_the_test_ping_reaches_only_its_endpoint_even_while_switched_off(receiver, make_endpoint, admin_context):
    endpoint = make_endpoint(receiver.url, events=["webhook."])
    other = make_endpoint(receiver.url.replace("/alm", "/other"), events=["webhook."])
    services.webhook_endpoint_update(endpoint=endpoint, is_active=False, context=admin_context)

    ping = services.webhook_endpoint_test(endpoint=endpoint, context=admin_context)
    services.notifications_dispatch()

    assert services.webhook_delivery_attempt(delivery_id=ping.pk).status == "delivered"
    [request] = receiver.received
    body = json.loads(request.body)
    assert request.headers["X-ALM-Event"] == "webhook.test" and body["event"] == "webhook.test"
    assert body["data"]["object"]["id"] == str(endpoint.pk)
    assert not WebhookDelivery.objects.filter(endpoint=other, event__in=["webhook.test", "webhook.tested"]).exists()
    tested = AuditEvent.objects.get(action="webhook.tested")
    assert tested.object_id == str(endpoint.pk) and body["id"] == tested.seq


def test_the_sweep_publishes_what_is_due_and_the_task_sends_it(receiver, make_endpoint, environment, published):
    _, delivery = _one_delivery(receiver, make_endpoint, environment)
    published.clear()
    assert services.notifications_publish_due() == 1
    assert published == [("notifications.deliver_webhook", (delivery.pk,))]

    from alm_portal.notifications import tasks

    assert tasks.deliver_webhook(delivery.pk) == "delivered"
    assert tasks.deliver_webhook(delivery.pk) == "delivered"
    assert len(receiver.received) == 1
    published.clear()
    assert services.notifications_publish_due() == 0
