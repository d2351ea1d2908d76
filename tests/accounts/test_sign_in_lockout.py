"""Password sign-in: 5 failures per (username, address) lock that pair for the cool-off; every attempt
is audited; the lockout reads the same whether or not the account exists."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from alm_portal.accounts.models import SignInThrottle
from alm_portal.audit.models import AuditEvent

pytestmark = pytest.mark.django_db
GOOD = "correct-horse-battery"
LOCKED = "Too many failed sign-ins"


@pytest.fixture(autouse=True)
def fast_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _attempt(client: Client, username: str, password: str, address: str = "198.51.100.7") -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def _alert(response: Any) -> str:
    match = re.search(r'<p class="error" role="alert">(.*?)</p>', response.content.decode(), re.S)
    assert match, response.content.decode()[:500]
    return match.group(1)


def _fail(client: Client, username: str, times: int, address: str = "198.51.100.7") -> Any:
    response = None
    for _ in range(times):
        response = _attempt(client, username, "wrong", address)
    return response


def test_four_failures_leave_the_right_password_working(client: Client, maker: Any) -> None:
    _fail(client, "maker", 4)
    assert _attempt(client, "maker", GOOD).status_code == 302
    assert not SignInThrottle.objects.exists()  # the success ended the count


def test_the_fifth_failure_locks_and_even_the_right_password_is_refused(client: Client, maker: Any) -> None:
    fifth = _fail(client, "maker", 5)
    assert LOCKED in fifth.content.decode()
    refused = _attempt(client, "maker", GOOD)
    assert refused.status_code == 200 and LOCKED in refused.content.decode()
    assert "_auth_user_id" not in client.session

    events = list(AuditEvent.objects.filter(action__startswith="auth.sign_in").order_by("seq"))
    assert [e.action for e in events] == ["auth.sign_in_failed"] * 5 + ["auth.sign_in_locked_out"]
    assert all(e.outcome == "denied" and e.client_ip == "198.51.100.7" for e in events)
    assert events[4].after["failures"] == 5 and events[4].after["locked_until"]
    assert events[-1].object_repr == "maker"


def test_a_lock_reads_the_same_for_an_unknown_username(client: Client, maker: Any) -> None:
    known = _alert(_fail(client, "maker", 6))
    unknown = _alert(_fail(client, "nobody-here", 6))
    assert LOCKED in known and known == unknown


def test_the_lock_is_per_address_and_per_username(client: Client, maker: Any, approver: Any) -> None:
    _fail(client, "maker", 5)
    assert _attempt(Client(), "maker", GOOD, address="203.0.113.20").status_code == 302
    assert _attempt(Client(), "approver", GOOD).status_code == 302
    assert _attempt(Client(), "MAKER", GOOD).status_code == 200  # case does not get around it


def test_the_lock_ends_after_the_cool_off(client: Client, maker: Any, settings: Any) -> None:
    _fail(client, "maker", 5)
    SignInThrottle.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    assert _attempt(client, "maker", GOOD).status_code == 302


def test_failures_older_than_the_cool_off_are_forgotten(client: Client, maker: Any, settings: Any) -> None:
    _fail(client, "maker", 4)
    SignInThrottle.objects.update(first_failure_at=timezone.now() - timedelta(minutes=16))
    _fail(client, "maker", 1)
    assert SignInThrottle.objects.get().failures == 1
    assert _attempt(client, "maker", GOOD).status_code == 302


def test_the_admin_sign_in_honours_the_lock(client: Client, admin_user: Any) -> None:
    _fail(client, "admin", 5)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "admin", "password": GOOD}, REMOTE_ADDR="198.51.100.7"
    )
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="auth.sign_in_locked_out").count() == 1


def test_the_limit_and_cool_off_are_settings(client: Client, maker: Any, settings: Any) -> None:
    settings.ALM_SIGN_IN_MAX_FAILURES = 2
    settings.ALM_SIGN_IN_COOLOFF_MINUTES = 3
    second = _fail(client, "maker", 2).content.decode()
    assert LOCKED in second and "3 minutes" in second
    lock = SignInThrottle.objects.get()
    assert timedelta(minutes=2) < lock.locked_until - timezone.now() <= timedelta(minutes=3)


def test_counts_past_their_cool_off_are_pruned_but_live_locks_stay(client: Client, maker: Any) -> None:
    _fail(client, "old-guess", 1)
    _fail(client, "locked-guess", 5)
    SignInThrottle.objects.update(first_failure_at=timezone.now() - timedelta(hours=1))
    _fail(client, "new-guess", 1)
    assert set(SignInThrottle.objects.values_list("username", flat=True)) == {"locked-guess", "new-guess"}
