"""Audit exports: at most ALM_EXPORT_MAX_CONCURRENT_PER_USER per user and ALM_EXPORT_MAX_CONCURRENT in all at a
time (429 exports_busy beyond that), each streamed in flat memory.

Finding 9 of the security review: on 1,000,000 events one full CSV export took 119 s; eight concurrent JSONL
exports took /healthz down until the client died, with no concurrency or rate limit on exports. Here at CI
scale (50,000 events); the full-scale figures are in bench/README.md.
"""

from __future__ import annotations

import socket
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone
from rest_framework.test import APIClient

from alm_portal.limits import concurrency
from tests.support.gunicorn import start_gunicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scale_seed

pytestmark = pytest.mark.django_db
EXPORT = "/api/v1/audit-events/export/"
MIB = 1024 * 1024


def reader(token_for: Any, user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user, scopes=['read'])}")
    return client


def seed_events(count: int) -> None:
    """`count` chained events after the current head, through COPY (bench/scale_seed.py)."""
    scale_seed.copy_audit_events(
        count=count, world=scale_seed.World(), timings=scale_seed.Timings(), now=timezone.now(), rebuild_indexes=False
    )


def test_a_second_export_of_the_same_user_waits_for_the_first(make_user: Any, token_for: Any) -> None:
    client = reader(token_for, make_user("auditor", "auditor"))
    first = client.get(EXPORT)  # open, nothing read yet: it holds the user's slot
    assert first.status_code == 200
    second = client.get(EXPORT, {"file_format": "csv"})
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "exports_busy"
    assert second["Retry-After"] == str(concurrency.RETRY_AFTER_SECONDS)
    b"".join(first.streaming_content)  # read to the end: the response closes and frees the slot
    again = client.get(EXPORT, {"file_format": "csv"})
    assert again.status_code == 200
    b"".join(again.streaming_content)


def test_the_portal_runs_at_most_n_exports_in_all(settings: Any, make_user: Any, token_for: Any) -> None:
    settings.ALM_EXPORT_MAX_CONCURRENT = 2
    clients = [reader(token_for, make_user(f"auditor{n}", "auditor")) for n in range(3)]
    held = [clients[0].get(EXPORT), clients[1].get(EXPORT)]
    assert [response.status_code for response in held] == [200, 200]
    refused = clients[2].get(EXPORT)
    assert refused.status_code == 429 and refused.json()["error"]["details"]["limit"] == 2
    for response in held:
        b"".join(response.streaming_content)
    assert clients[2].get(EXPORT).status_code == 200


def test_a_refused_export_is_not_audited_as_exported(make_user: Any, token_for: Any) -> None:
    from alm_portal.audit.models import AuditEvent

    client = reader(token_for, make_user("auditor", "auditor"))
    held = client.get(EXPORT)
    client.get(EXPORT)
    assert AuditEvent.objects.filter(action="audit.exported").count() == 1
    b"".join(held.streaming_content)


def test_a_slot_whose_holder_died_frees_itself_when_its_lease_runs_out(
    monkeypatch: pytest.MonkeyPatch, make_user: Any, token_for: Any
) -> None:
    auditor = make_user("auditor", "auditor")
    monkeypatch.setattr(concurrency, "LEASE_SECONDS", 1)
    concurrency.export_slots_acquire(user_id=auditor.pk)  # taken and never released, as by a killed worker
    client = reader(token_for, auditor)
    assert client.get(EXPORT).status_code == 429
    time.sleep(1.5)  # the lease, not a measurement
    response = client.get(EXPORT)
    assert response.status_code == 200
    b"".join(response.streaming_content)


@pytest.mark.postgres
@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_an_export_streams_in_flat_memory(file_format: str, make_user: Any, token_for: Any) -> None:
    client = reader(token_for, make_user("auditor", "auditor"))
    peaks = {}
    for total in (10_000, 50_000):
        from alm_portal.audit.models import AuditEvent

        seed_events(total - AuditEvent.objects.count())
        tracemalloc.start()
        try:
            response = client.get(EXPORT, {"file_format": file_format})
            size = sum(len(chunk) for chunk in response.streaming_content)
            _, peaks[total] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert size > total * 300  # every event was written
    assert peaks[50_000] <= peaks[10_000] + 2 * MIB, peaks  # five times the rows, no more memory
    assert peaks[50_000] <= 16 * MIB, peaks


def open_export(port: int, token: str) -> tuple[int, socket.socket]:
    """Start an export and read only its headers, as a slow client does; (status, the socket left open)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = f"GET {EXPORT}?file_format=jsonl HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return int(head.split(b" ", 2)[1]), sock


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_eight_slow_exports_against_a_live_server_leave_it_answering(
    tmp_path: Path, make_user: Any, token_for: Any
) -> None:
    seed_events(50_000)
    tokens = [token_for(make_user(f"auditor{n}", "auditor"), scopes=["read"]) for n in range(8)]
    server = start_gunicorn(tmp_path, workers=2, threads=8, env={"ALM_EXPORT_MAX_CONCURRENT": "4"})
    sockets: list[socket.socket] = []
    statuses = []
    try:
        for token in tokens:
            status, sock = open_export(server.port, token)
            statuses.append(status)
            sockets.append(sock)
        assert sorted(statuses) == [200] * 4 + [429] * 4
        # The four streams hold four threads; the rest of the server still answers.
        for _ in range(5):
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
