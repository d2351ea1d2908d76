"""Refused API requests without a signed-in caller are counted per client address and window and audited as
one event; refusals of signed-in callers stay one event each (they are evidence).

Finding 7 of the security review: 300 anonymous requests with a malformed bearer token and a 2 KB User-Agent
wrote 300 permanent `api.denied` rows (~125 rows/s from one client) into a table nobody may delete from.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from alm_portal.audit.denials import denied_requests_flush
from alm_portal.audit.models import AuditEvent, DeniedRequestTally
from alm_portal.audit.services import audit_verify

pytestmark = pytest.mark.django_db

LONG_AGENT = "probe/" + "x" * 2048


def anonymous(address: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address, HTTP_USER_AGENT=LONG_AGENT)
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    return client


def later() -> Any:
    return timezone.now() + timedelta(hours=1)


def test_three_hundred_malformed_tokens_become_one_event_with_the_count(settings: Any) -> None:
    settings.ALM_AUDIT_CHECKPOINT_KEY = "test-checkpoint-key"
    before = AuditEvent.objects.count()
    client = anonymous("198.51.100.7")
    for _ in range(300):
        assert client.get("/api/v1/me/").status_code == 401

    assert AuditEvent.objects.count() == before  # nothing permanent per request
    assert denied_requests_flush(now=later()) == 1
    event = AuditEvent.objects.get(action="api.denied.unauthenticated")
    assert AuditEvent.objects.count() == before + 1
    assert (event.outcome, event.client_ip, event.actor_id) == ("denied", "198.51.100.7", None)
    assert event.after["count"] == 300 and event.after["codes"] == {"not_authenticated": 300}
    assert event.after["first_request"] == {"method": "GET", "path": "/api/v1/me/"}
    assert len(event.user_agent) == 500 and event.user_agent.startswith("probe/")
    assert not DeniedRequestTally.objects.exists()
    assert audit_verify().ok


def test_each_client_and_each_window_gets_its_own_count(settings: Any) -> None:
    settings.ALM_DENIAL_AUDIT_WINDOW_SECONDS = 60
    for address, count in (("198.51.100.7", 3), ("203.0.113.9", 2)):
        for _ in range(count):
            anonymous(address).get("/api/v1/environments/")
    APIClient(REMOTE_ADDR="203.0.113.9").get("/api/v1/environments/")  # no credentials at all: counted too
    # Still inside the window: nothing is written yet.
    assert denied_requests_flush(now=timezone.now()) == 0
    assert denied_requests_flush(now=later()) == 2
    counts = {
        event.client_ip: (event.after["count"], event.after["codes"])
        for event in AuditEvent.objects.filter(action="api.denied.unauthenticated")
    }
    assert counts == {
        "198.51.100.7": (3, {"not_authenticated": 3}),
        "203.0.113.9": (3, {"not_authenticated": 3}),
    }
    assert denied_requests_flush(now=later()) == 0  # running it again writes nothing twice


def test_a_signed_in_callers_refusals_stay_one_event_each(api_world: Any) -> None:
    client = api_world.client("maker")
    before = AuditEvent.objects.filter(action="api.denied").count()
    for _ in range(3):
        assert client.get("/api/v1/audit-events/").status_code == 403
    denied = AuditEvent.objects.filter(action="api.denied").order_by("seq")
    assert denied.count() == before + 3
    assert all(event.actor_id == api_world.users["maker"].pk for event in denied[before:])
    assert not DeniedRequestTally.objects.exists()


def test_the_window_is_a_setting(settings: Any) -> None:
    settings.ALM_DENIAL_AUDIT_WINDOW_SECONDS = 600
    anonymous("198.51.100.7").get("/api/v1/me/")
    tally = DeniedRequestTally.objects.get()
    assert (tally.window_end - tally.window_start) == timedelta(seconds=600)
    assert tally.window_start.timestamp() % 600 == 0
