"""An endpoint whose every delivery has failed for a day is switched off and says why; deliveries run on a
queue of their own, so a slow or dead receiver never delays a job.

From the security review (findings 14 of the previous issue and the webhook part of this one): 3,178 queued
deliveries to 33 dead webhooks stalled an export and a pre-flight for over 5 minutes, and dead endpoints were
retried for ever.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alm_portal.audit.models import AuditEvent
from alm_portal.notifications import services
from alm_portal.notifications.models import WebhookDelivery, WebhookEndpoint
from alm_portal.notifications.services.delivery import LOOPBACK_NO_ANSWER
from tests.notifications.conftest import emit

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


def fail_once_at(endpoint: WebhookEndpoint, environment: Any, when: Any) -> WebhookDelivery:
    """A new event for the endpoint, and its first attempt at `when`."""
    emit("drift.detected", target=environment, after={"kind": "unexpected_version"})
    services.notifications_dispatch()
    delivery = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-pk").first()
    assert delivery is not None
    services.webhook_delivery_attempt(delivery_id=delivery.pk, now=when)
    delivery.refresh_from_db()
    return delivery


def test_an_endpoint_failing_for_a_day_is_switched_off_and_says_so(
    make_endpoint: Any, environment: Any, closed_port: int, api_client: Any, admin_user: Any, token_for: Any
) -> None:
    endpoint = make_endpoint(f"https://127.0.0.1:{closed_port}/hooks/alm")
    start = timezone.now() + timedelta(minutes=1)  # after the deliveries are made, so each is due
    for hours in (0, 12, 23):
        delivery = fail_once_at(endpoint, environment, start + timedelta(hours=hours))
        # A closed local port: in loopback mode the log does not say refused, silent or not TLS.
        assert delivery.last_error == LOOPBACK_NO_ANSWER
        endpoint.refresh_from_db()
        assert endpoint.is_active and endpoint.failing_since == start

    fail_once_at(endpoint, environment, start + timedelta(hours=24, minutes=1))

    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.disabled_reason == (
        "Every delivery failed for 24 h (last: Could not deliver: no HTTP answer); turn it on again once it answers."
    )
    disabled = AuditEvent.objects.get(action="webhook.disabled")
    assert disabled.object_id == str(endpoint.pk) and disabled.after["reason"] == endpoint.disabled_reason
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(admin_user, scopes=['read', 'admin'])}")
    shown = api_client.get(f"/api/v1/webhooks/{endpoint.pk}/").json()
    assert shown["is_active"] is False and shown["disabled_reason"] == endpoint.disabled_reason
    # Switched off: later events make no deliveries for it.
    before = WebhookDelivery.objects.filter(endpoint=endpoint).count()
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == before


def test_a_success_ends_the_run_of_failures(make_endpoint: Any, environment: Any, receiver: Any) -> None:
    endpoint = make_endpoint(receiver.url)
    start = timezone.now() + timedelta(minutes=1)  # after the deliveries are made, so each is due
    receiver.answer(503)
    fail_once_at(endpoint, environment, start)
    delivered = fail_once_at(endpoint, environment, start + timedelta(hours=20))
    assert delivered.status == "delivered"
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None
    receiver.answer(503, 503)
    fail_once_at(endpoint, environment, start + timedelta(hours=30))
    fail_once_at(endpoint, environment, start + timedelta(hours=40))
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.failing_since == start + timedelta(hours=30)


def test_the_window_is_a_setting_and_turning_it_on_again_starts_afresh(
    make_endpoint: Any, environment: Any, closed_port: int, settings: Any, admin_context: Any
) -> None:
    settings.ALM_WEBHOOK_DISABLE_AFTER_HOURS = 2
    endpoint = make_endpoint(f"https://127.0.0.1:{closed_port}/hooks/alm")
    start = timezone.now() + timedelta(minutes=1)  # after the deliveries are made, so each is due
    fail_once_at(endpoint, environment, start)
    fail_once_at(endpoint, environment, start + timedelta(hours=2))
    endpoint.refresh_from_db()
    assert not endpoint.is_active and "failed for 2 h" in endpoint.disabled_reason
    services.webhook_endpoint_update(endpoint=endpoint, is_active=True, context=admin_context)
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.failing_since is None and endpoint.disabled_reason == ""


def test_notification_tasks_are_routed_to_their_own_queue(settings: Any) -> None:
    from alm_portal.celery import app
    from alm_portal.notifications import tasks

    for task in (tasks.deliver_webhook, tasks.deliver_email, tasks.dispatch):
        assert app.amqp.router.route({}, task.name)["queue"].name == "notifications", task.name
    assert app.amqp.router.route({}, "deployments.run_job")["queue"].name == "celery"


# --- with real workers -------------------------------------------------------------------------------------------


@pytest.fixture
def published() -> list[Any]:
    """Here messages really go to Redis (the package's conftest records them instead)."""
    return []


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers: every attempt there waits for its read timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1000)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_deliveries_to_dead_receivers_never_delay_a_job(
    celery_worker_factory: Any, make_endpoint: Any, environment: Any, black_hole: int
) -> None:
    from alm_portal.audit.context import AuditContext
    from alm_portal.audit_verification.services import audit_verification_request
    from alm_portal.jobs.models import Job

    endpoints = [make_endpoint(f"https://127.0.0.1:{black_hole}/hooks/{n}") for n in range(4)]
    for _ in range(6):
        emit("drift.detected", target=environment)
    services.notifications_dispatch()  # 24 deliveries, published on commit, each worth a 10 s read timeout
    assert WebhookDelivery.objects.filter(endpoint__in=endpoints).count() == 24
    job = audit_verification_request(context=AuditContext.system())  # published after them

    worker = celery_worker_factory(queues="celery")  # docker-compose's `worker`: the default queue only
    worker.wait_for(lambda: Job.objects.get(pk=job.pk).status == "succeeded", timeout=90)
    assert not WebhookDelivery.objects.filter(attempts__gt=0).exists()  # no delivery ran ahead of it

    notifier = celery_worker_factory(name="notifier", queues="notifications")
    notifier.wait_for(lambda: WebhookDelivery.objects.filter(attempts__gt=0).exists(), timeout=90)
