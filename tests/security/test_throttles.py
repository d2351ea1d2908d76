"""API throttles for anonymous clients, signed-in clients and failed authentication, with their counts in the
shared cache (Redis here), so every web process counts into the same number.

Finding 7 of the security review: 300 anonymous requests with a malformed bearer token met no throttling
(~125 requests/s from one client, each writing an audit row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from rest_framework.test import APIClient

from alm_portal.limits import throttling
from tests.support.gunicorn import start_gunicorn

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"


def client_from(address: str, token: str | None = None) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_anonymous_clients_get_429_past_their_rate_per_address(settings: Any) -> None:
    settings.ALM_THROTTLE_ANON = "5/min"
    statuses = [client_from("198.51.100.7").get(ME).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    throttled = client_from("198.51.100.7").get(ME)
    body = throttled.json()["error"]
    assert body["code"] == "throttled" and 1 <= body["details"]["retry_after"] <= 60
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert client_from("203.0.113.9").get(ME).status_code == 401  # another address has its own count


def test_the_public_schema_counts_against_the_anonymous_rate(settings: Any) -> None:
    settings.ALM_THROTTLE_ANON = "2/min"
    statuses = [client_from("198.51.100.7").get("/api/schema/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_failed_authentication_locks_the_address_out_of_token_checks(settings: Any, maker: Any, token_for: Any) -> None:
    settings.ALM_THROTTLE_FAILED_AUTH = "3/min"
    good = token_for(maker)
    bad = client_from("198.51.100.7", "alm_1_" + "x" * 43)
    assert [bad.get(ME).status_code for _ in range(5)] == [401, 401, 401, 429, 429]
    # From that address even a valid token waits until the window ends: no lookups for a guessing client.
    assert client_from("198.51.100.7", good).get(ME).status_code == 429
    assert client_from("203.0.113.9", good).get(ME).status_code == 200


def test_signed_in_clients_get_429_past_their_rate_per_user(
    settings: Any, maker: Any, approver: Any, token_for: Any
) -> None:
    settings.ALM_THROTTLE_USER = "4/min"
    token = token_for(maker)
    statuses = [client_from(f"198.51.100.{n}", token).get(ME).status_code for n in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]  # per user, whatever the address
    assert client_from("198.51.100.1", token_for(approver)).get(ME).status_code == 200


def test_a_signed_in_callers_refusals_count_against_their_rate(settings: Any, api_world: Any) -> None:
    from alm_portal.audit.models import AuditEvent

    settings.ALM_THROTTLE_USER = "3/min"
    client = api_world.client("maker")
    before = AuditEvent.objects.filter(action="api.denied").count()
    statuses = [client.get("/api/v1/audit-events/").status_code for _ in range(5)]
    assert statuses == [403, 403, 403, 429, 429]
    assert AuditEvent.objects.filter(action="api.denied").count() == before + 3  # throttled ones are not audited


def test_throttled_anonymous_requests_are_in_the_denial_count(settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from alm_portal.audit.denials import denied_requests_flush
    from alm_portal.audit.models import AuditEvent

    settings.ALM_THROTTLE_FAILED_AUTH = "2/min"
    client = client_from("198.51.100.7", "garbage")
    for _ in range(10):
        client.get(ME)
    denied_requests_flush(now=timezone.now() + timedelta(hours=1))
    event = AuditEvent.objects.get(action="api.denied.unauthenticated")
    assert event.after["count"] == 10 and event.after["codes"] == {"not_authenticated": 2, "throttled": 8}


@pytest.mark.parametrize(("text", "expected"), [("60/min", (60, 60)), ("5/s", (5, 1)), ("1000/hour", (1000, 3600))])
def test_rates_are_read_from_settings(settings: Any, text: str, expected: tuple[int, int]) -> None:
    settings.ALM_THROTTLE_USER = text
    assert throttling.rate_of(throttling.USER) == expected
    settings.ALM_THROTTLE_USER = "off"
    assert throttling.rate_of(throttling.USER) is None


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_every_process_counts_into_the_same_number(tmp_path: Path, maker: Any, token_for: Any) -> None:
    """This process spends the user's whole budget; two gunicorn workers in another process then refuse."""
    token = token_for(maker)
    server = start_gunicorn(tmp_path, workers=2, env={"ALM_THROTTLE_USER": "5/min"})
    try:
        for _ in range(2):
            assert requests.get(server.url + ME, headers={"Authorization": f"Bearer {token}"}, timeout=10).ok
        # The rest of the budget is spent from here, through the cache, as another web process would.
        from django.conf import settings as live

        live.ALM_THROTTLE_USER = "5/min"
        try:
            for _ in range(3):
                assert throttling.take(throttling.USER, str(maker.pk)).allowed
        finally:
            live.ALM_THROTTLE_USER = "100000/min"
        statuses = {
            requests.get(
                server.url + ME, headers={"Authorization": f"Bearer {token}", "Connection": "close"}, timeout=10
            ).status_code
            for _ in range(6)
        }
        assert statuses == {429}
    finally:
        server.stop()
