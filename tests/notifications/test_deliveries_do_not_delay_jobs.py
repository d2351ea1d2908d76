"""A backlog of deliveries to slow or dead webhooks does not hold up the jobs queued behind it.

The review queued 3,178 deliveries to 33 dead webhooks; an export and a pre-flight then waited for more than
5 minutes, because every attempt (up to 15 s against a dead host) ran on the same worker queue, in order.
Deliveries now go to a queue of their own ("notifications"), which a worker consumes beside the job queue.
Here one real worker (concurrency 1, as `make run` runs it) gets a hook that takes seconds per attempt, a
backlog of deliveries to it, and then a job: the job must not wait for the backlog to drain.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_enqueue
from alm_portal.notifications import services
from alm_portal.notifications.models import WebhookDelivery
from environments.models import Environment
from tests.notifications.conftest import emit

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

BACKLOG = 8
SECONDS_PER_ATTEMPT = 1.5


@pytest.fixture
def slow_hook(receiver_certificates: tuple[Path, Path, Path]) -> Iterator[tuple[str, Path, list[datetime]]]:
    """A receiver that takes SECONDS_PER_ATTEMPT to answer 503 (a struggling host: retried, never delivered)."""
    ca_file, cert_file, key_file = receiver_certificates
    arrivals: list[datetime] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrivals.append(datetime.now(tz=UTC))
            time.sleep(SECONDS_PER_ATTEMPT)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/hook", ca_file, arrivals
    server.shutdown()
    server.server_close()


@pytest.fixture
def published() -> None:
    """The package's conftest records publishes instead of sending them; here the real broker is the point."""


def test_a_backlog_of_slow_deliveries_does_not_delay_a_job(
    slow_hook: Any, make_endpoint: Any, team: Any, celery_worker_factory: Any
) -> None:
    url, ca_file, arrivals = slow_hook
    environment = Environment.objects.create(
        name="quiet-env", url="https://quiet-env.crm4.dynamics.com", kind="test", tenant_id="t", team=team
    )
    make_endpoint(url)
    for number in range(BACKLOG):
        emit("drift.detected", target=environment, after={"n": number})
    report = services.notifications_dispatch()  # publishes one delivery task per delivery, after commit
    assert report.webhook_deliveries == BACKLOG
    # Queued behind the backlog: a job (every kind, exports and pre-flights included, is the same
    # deployments.run_job task on the same queue); this one needs no Dataverse: a verification of the chain.
    job = job_enqueue(kind=JobKind.AUDIT_VERIFY, environment=None, params={}, context=AuditContext.system())

    worker = celery_worker_factory(env={"ALM_WEBHOOK_CA_BUNDLE": str(ca_file), "ALM_ALLOW_LOOPBACK": "true"})
    worker.wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED, timeout=BACKLOG * 10 + 60)

    finished = Job.objects.get(pk=job.pk).finished_at
    assert finished is not None
    before_the_job = [arrival for arrival in arrivals if arrival < finished]
    # The job waited for at most the attempt under way when it was taken and one more, not for all of them.
    assert len(before_the_job) <= 2, (len(before_the_job), BACKLOG)
    assert WebhookDelivery.objects.filter(attempts=0).count() >= BACKLOG - 3
