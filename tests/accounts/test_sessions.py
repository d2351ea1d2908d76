"""Browser sessions: a new key at sign-in, 30 min idle and 12 h absolute limits enforced server side,
sign-out ending the stored session, and an admin ending all of a user's sessions. API tokens are not
sessions and none of this touches them."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_portal.accounts.middleware import LAST_SEEN_KEY, SIGNED_IN_AT_KEY
from alm_portal.audit.models import AuditEvent

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def fast_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _signed_in(username: str) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:300]
    return client


def _age(client: Client, *, signed_in_ago: float | None = None, seen_ago: float | None = None) -> None:
    session = client.session
    now = time.time()
    if signed_in_ago is not None:
        session[SIGNED_IN_AT_KEY] = now - signed_in_ago
    if seen_ago is not None:
        session[LAST_SEEN_KEY] = now - seen_ago
    session.save()


def test_signing_in_gives_a_new_session_key(maker: Any) -> None:
    client = Client()
    before = client.session
    before["lang"] = "en"  # an anonymous session that already exists
    before.save()
    client.cookies["sessionid"] = before.session_key
    client.post("/accounts/login/", {"username": "maker", "password": PASSWORD})
    after = client.cookies["sessionid"].value
    assert after != before.session_key
    assert not Session.objects.filter(session_key=before.session_key).exists()
    assert Session.objects.filter(session_key=after).exists()


def test_signing_out_ends_the_stored_session(maker: Any) -> None:
    client = _signed_in("maker")
    key = client.cookies["sessionid"].value
    client.post("/accounts/logout/")
    assert not Session.objects.filter(session_key=key).exists()
    replay = Client()
    replay.cookies["sessionid"] = key
    assert replay.get("/").status_code == 302


def test_thirty_idle_minutes_end_the_session(maker: Any) -> None:
    client = _signed_in("maker")
    key = client.cookies["sessionid"].value
    _age(client, seen_ago=29 * 60)
    assert client.get("/").status_code == 200
    _age(client, seen_ago=30 * 60 + 1)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Session.objects.filter(session_key=key).exists()
    event = AuditEvent.objects.get(action="auth.session_expired")
    assert event.after == {"reason": "idle"} and event.actor_id == maker.pk
    assert "without activity" in client.get(response["Location"]).content.decode()


def test_a_live_part_of_a_page_sends_the_whole_tab_to_sign_in_when_the_session_ends(maker: Any) -> None:
    client = _signed_in("maker")
    _age(client, seen_ago=31 * 60)
    response = client.get("/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Redirect"] == "/accounts/login/"
    assert AuditEvent.objects.get(action="auth.session_expired").after == {"reason": "idle"}


def test_twelve_hours_end_the_session_however_active(maker: Any) -> None:
    client = _signed_in("maker")
    _age(client, signed_in_ago=12 * 3600 - 60, seen_ago=0)
    assert client.get("/").status_code == 200
    _age(client, signed_in_ago=12 * 3600 + 1, seen_ago=0)
    assert client.get("/").status_code == 302
    assert AuditEvent.objects.get(action="auth.session_expired").after == {"reason": "absolute"}


def test_the_limits_are_settings(maker: Any, settings: Any) -> None:
    settings.ALM_SESSION_IDLE_MINUTES = 5
    client = _signed_in("maker")
    _age(client, seen_ago=5 * 60 + 1)
    assert client.get("/").status_code == 302


def test_a_page_view_is_activity_but_live_polling_is_not(maker: Any) -> None:
    client = _signed_in("maker")
    _age(client, seen_ago=20 * 60)
    client.get("/", HTTP_HX_REQUEST="true")
    assert time.time() - client.session[LAST_SEEN_KEY] >= 20 * 60 - 5
    client.get("/")
    assert time.time() - client.session[LAST_SEEN_KEY] < 5
    # The stored row expires with the idle limit too, so an abandoned session is dropped by the database.
    expire = Session.objects.get(session_key=client.cookies["sessionid"].value).expire_date
    assert 30 * 60 <= (expire - timezone.now()).total_seconds() <= 31 * 60 + 5


def test_api_tokens_are_not_sessions(maker: Any, token_for: Any) -> None:
    token = token_for(maker)
    client = _signed_in("maker")
    _age(client, seen_ago=31 * 60)  # an expired browser session alongside the token
    response = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and response.json()["username"] == "maker"
    fresh = Client()
    assert fresh.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert "sessionid" not in fresh.cookies


def test_an_admin_sees_and_ends_all_of_a_users_sessions(maker: Any, admin_user: Any, token_for: Any) -> None:
    token = token_for(maker)
    laptop, tablet = _signed_in("maker"), _signed_in("maker")
    admin = _signed_in("admin")
    people = admin.get("/accounts/users/").content.decode()
    assert 'data-testid="live-sessions-maker">2<' in people
    page = admin.get(f"/accounts/users/{maker.pk}/sessions/").content.decode()
    assert page.count("<tr><td>") == 2 and 'id="end-sessions"' in page

    response = admin.post(f"/accounts/users/{maker.pk}/sessions/end/")

    assert response.status_code == 302
    assert laptop.get("/").status_code == 302 and tablet.get("/").status_code == 302
    assert admin.get("/").status_code == 200
    event = AuditEvent.objects.get(action="user.sessions_ended")
    assert event.actor_id == admin_user.pk and event.object_id == str(maker.pk)
    assert event.after == {"sessions_ended": 2}
    assert 'id="no-sessions"' in admin.get(f"/accounts/users/{maker.pk}/sessions/").content.decode()
    assert Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


@pytest.mark.parametrize("persona", ["maker", "approver", "auditor"])
def test_only_admins_see_or_end_sessions(persona: str, maker: Any, approver: Any, auditor: Any) -> None:
    client = _signed_in(persona)
    assert client.get("/accounts/users/").status_code == 403
    assert client.get(f"/accounts/users/{maker.pk}/sessions/").status_code == 403
    assert client.post(f"/accounts/users/{maker.pk}/sessions/end/").status_code == 403
    assert not AuditEvent.objects.filter(action="user.sessions_ended").exists()


def test_the_people_page_costs_the_same_queries_for_few_and_many(admin_user: Any, make_user: Any) -> None:
    admin = _signed_in("admin")
    admin.get("/accounts/users/")  # the first request of a session writes its start times

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin.get("/accounts/users/").status_code == 200
        return len(captured)

    few = queries()
    for number in range(15):
        _signed_in(make_user(f"person{number}").username)
    assert queries() == few
