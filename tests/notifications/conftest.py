"""Fixtures for notifications: a real HTTPS receiver on 127.0.0.1 (its own CA, trusted through
ALM_WEBHOOK_CA_BUNDLE, loopback allowed), a recorder in place of the broker, and helpers that write
audit events the way services do."""

from __future__ import annotations

import json
import ssl
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record
from dataverse_emulator.tls import ensure_certificates

RECEIVER_SECRET = "whsec-test-0123456789abcdef"


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: records every POST and answers with the next scripted status (200 when
    the script is empty)."""

    server: ThreadingHTTPServer
    ca_file: Path
    received: list[ReceivedRequest] = field(default_factory=list)
    script: deque[int] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/hooks/alm"

    def answer(self, *statuses: int) -> None:
        with self.lock:
            self.script.extend(statuses)

    def next_status(self) -> int:
        with self.lock:
            return self.script.popleft() if self.script else 200


@pytest.fixture(scope="session")
def receiver_certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A local CA and a leaf certificate for 127.0.0.1 / localhost (made once per run)."""
    return ensure_certificates(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture
def receiver(receiver_certificates: tuple[Path, Path, Path], settings: Any) -> Iterator[Receiver]:
    ca_file, cert_file, key_file = receiver_certificates
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            target = holder["receiver"]
            with target.lock:
                target.received.append(ReceivedRequest(self.path, dict(self.headers.items()), body))
            status = target.next_status()
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    holder["receiver"] = Receiver(server=server, ca_file=ca_file)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver", daemon=True
    )
    thread.start()
    settings.ALM_WEBHOOK_CA_BUNDLE = str(ca_file)
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _notification_settings(settings: Any) -> None:
    settings.ALM_ALLOW_LOOPBACK = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "alm-portal@example.com"


@pytest.fixture(autouse=True)
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Every broker publish, as (task name, args), instead of a real broker."""
    sent: list[tuple[str, tuple[Any, ...]]] = []
    lock = threading.Lock()

    def fake(task: Any, *, args: tuple[Any, ...] = (), countdown: float | None = None) -> bool:
        with lock:
            sent.append((task.name, tuple(args)))
        return True

    monkeypatch.setattr("alm_portal.celery.publish_best_effort", fake)
    return sent


@pytest.fixture
def admin_context(admin_user: Any) -> AuditContext:
    return AuditContext.for_user(admin_user, auth_method="session", request_id="req-notify-test")


@pytest.fixture
def environment(team: Any) -> Any:
    from environments.models import Environment

    return Environment.objects.create(
        name="contoso-test",
        url="https://contoso-test.crm4.dynamics.com",
        kind="test",
        tenant_id="00000000-0000-0000-0000-000000000001",
        team=team,
    )


@pytest.fixture
def other_environment(outsider: Any) -> Any:
    from environments.models import Environment

    return Environment.objects.create(
        name="fabrikam-test",
        url="https://fabrikam-test.crm4.dynamics.com",
        kind="test",
        tenant_id="00000000-0000-0000-0000-000000000002",
        team=outsider.teams.get(),
    )


def emit(
    action: str,
    *,
    target: Any = None,
    related: Any = None,
    outcome: str = "success",
    context: AuditContext | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit event as a service would (inside its transaction)."""
    with transaction.atomic():
        return record(
            context=context or AuditContext.system(),
            action=action,
            target=target,
            related=related,
            after=after,
            outcome=outcome,
        )


def promotion_ref(promotion_id: int, text: str = "Contoso 1.0 → test") -> ObjectRef:
    return ObjectRef(type="deployments.promotion", id=str(promotion_id), repr=text)


@pytest.fixture
def make_endpoint(admin_context: AuditContext) -> Any:
    """make_endpoint(url, events=[...], team=None, secret=...) through the service."""
    from alm_portal.notifications import services

    counter = {"n": 0}

    def _make(url: str, *, events: list[str] | None = None, team: Any = None, secret: str = RECEIVER_SECRET) -> Any:
        counter["n"] += 1
        return services.webhook_endpoint_create(
            name=f"hook-{counter['n']}",
            url=url,
            events=events or ["promotion.", "drift.detected"],
            secret=secret,
            team=team,
            context=admin_context,
        )

    return _make
