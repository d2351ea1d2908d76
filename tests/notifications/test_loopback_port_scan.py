"""In development loopback mode the webhook delivery log is no port scanner.

With ALM_ALLOW_LOOPBACK on, an admin may point a webhook at https://127.0.0.1:<any port>. The review did,
port by port, and read the delivery log: "Connection refused." for a closed port, "No answer within 10 s."
for a listening one, "TLS handshake ... failed." for a service that speaks something else. In loopback mode
every failure before an HTTP answer now reads the same; outside it (public receivers only, port 443) the
log keeps its specific reasons.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from alm_portal.notifications import services
from alm_portal.notifications.models import WebhookDelivery
from alm_portal.notifications.services import delivery as delivery_service
from tests.notifications.conftest import emit

pytestmark = pytest.mark.django_db


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # A silent port otherwise costs the full 5 s + 10 s of an attempt.
    monkeypatch.setattr(delivery_service, "CONNECT_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(delivery_service, "READ_TIMEOUT_SECONDS", 0.5)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.fixture
def plain_text_port() -> Iterator[int]:
    """A port whose service is not TLS: it answers the handshake with a line of text and hangs up."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    listener.close()


def _last_error(make_endpoint: Any, environment: Any, port: int) -> str:
    endpoint = make_endpoint(f"https://127.0.0.1:{port}/hooks/alm")
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert outcome.status == "pending"  # retried later, like any failure
    delivery.refresh_from_db()
    assert delivery.last_status_code is None
    return delivery.last_error


def test_refused_silent_and_non_tls_ports_read_the_same_in_loopback_mode(
    make_endpoint: Any,
    environment: Any,
    short_timeouts: None,
    closed_port: int,
    silent_port: int,
    plain_text_port: int,
) -> None:
    errors = {
        "closed": _last_error(make_endpoint, environment, closed_port),
        "silent": _last_error(make_endpoint, environment, silent_port),
        "not TLS": _last_error(make_endpoint, environment, plain_text_port),
    }

    assert len(set(errors.values())) == 1, errors
    assert "no HTTP answer" in errors["closed"]


def test_outside_loopback_mode_the_reason_is_kept(settings: Any) -> None:
    """Public receivers only (port 443): the specific reason helps whoever runs the receiver."""
    import requests

    settings.ALM_ALLOW_LOOPBACK = False
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    silent = requests.exceptions.ReadTimeout("read timed out")

    untrusted = requests.exceptions.SSLError("certificate verify failed")

    assert delivery_service.describe_failure(refused) == "Connection refused."
    assert delivery_service.describe_failure(silent) == "No answer within 10 s."
    assert delivery_service.describe_failure(untrusted) == "TLS handshake or certificate verification failed."
