"""Tokens minted with a token, revoking tokens, and token text in idempotency records (docs/security.md,
"API tokens"). Each test replays an attack an application-security review made on the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from alm_portal.accounts import services
from alm_portal.accounts.models import ApiToken
from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.idempotency.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens/"
ME = "/api/v1/me/"


def _client(text: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
    return client


def _token_of(text: str) -> ApiToken:
    return ApiToken.objects.get(pk=int(text.split("_")[1]))


def _mint(parent_text: str, **body: Any) -> Any:
    return _client(parent_text).post(TOKENS, {"scopes": ["read"], **body}, format="json")


def test_a_one_day_token_cannot_mint_a_ninety_day_child(maker: Any, token_for: Any) -> None:
    parent = token_for(maker, ["read"], days=1)

    response = _mint(parent, name="child", days=90)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error" and "days" in error["details"]
    assert "no later than" in error["details"]["days"][0]
    assert not ApiToken.objects.filter(name="child").exists()


def test_a_child_without_days_expires_with_its_parent_and_so_does_a_grandchild(maker: Any, token_for: Any) -> None:
    parent_text = token_for(maker, ["read"], days=1)
    parent = _token_of(parent_text)

    child = _mint(parent_text, name="child")
    assert child.status_code == 201, child.json()
    grandchild = _mint(child.json()["token"], name="grandchild")
    assert grandchild.status_code == 201, grandchild.json()

    for row in (ApiToken.objects.get(name="child"), ApiToken.objects.get(name="grandchild")):
        assert row.expires_at <= parent.expires_at
    assert ApiToken.objects.get(name="child").parent_id == parent.pk
    assert ApiToken.objects.get(name="grandchild").parent_id == ApiToken.objects.get(name="child").pk


def test_revoking_a_token_revokes_every_token_it_minted(maker: Any, token_for: Any) -> None:
    parent_text = token_for(maker, ["read", "request"], days=30)
    child_text = _mint(parent_text, name="child").json()["token"]
    grandchild_text = _mint(child_text, name="grandchild").json()["token"]
    sibling_text = token_for(maker, ["read"], name="unrelated")

    browser = Client()
    browser.force_login(maker)
    browser.post(reverse("accounts:api-token-revoke", args=[_token_of(parent_text).pk]))

    for text in (parent_text, child_text, grandchild_text):
        response = _client(text).get(ME)
        assert response.status_code == 401 and response.json()["error"]["code"] == "token_revoked", text
    assert _client(sibling_text).get(ME).status_code == 200
    revoked = AuditEvent.objects.filter(action="api_token.revoked").order_by("seq")
    assert [event.object_id for event in revoked] == [
        str(_token_of(text).pk) for text in (parent_text, child_text, grandchild_text)
    ]
    assert [(event.after or {}).get("reason") for event in revoked][1:] == ["its parent token was revoked"] * 2


def test_a_read_token_cannot_revoke_a_request_token(maker: Any, token_for: Any) -> None:
    reader = token_for(maker, ["read"], name="reader")
    requester = token_for(maker, ["read", "request"], name="ci")

    response = _client(reader).post(f"{TOKENS}{_token_of(requester).pk}/revoke/")

    assert response.status_code == 403, response.json()
    assert response.json()["error"]["code"] == "scope_insufficient"
    assert response.json()["error"]["details"] == {"needs_scopes": ["request"]}
    assert _client(requester).get(ME).status_code == 200
    # A token with the scopes it needs may, and so may the browser session.
    wider = _client(token_for(maker, ["read", "request"]))
    assert wider.post(f"{TOKENS}{_token_of(requester).pk}/revoke/").status_code == 200


def test_a_read_token_may_still_revoke_a_read_token_and_itself(maker: Any, token_for: Any) -> None:
    reader = token_for(maker, ["read"], name="reader")
    other = token_for(maker, ["read"], name="other")

    assert _client(reader).post(f"{TOKENS}{_token_of(other).pk}/revoke/").status_code == 200
    assert _client(reader).post(f"{TOKENS}{_token_of(reader).pk}/revoke/").status_code == 200
    assert _client(reader).get(ME).status_code == 401


def test_an_idempotent_token_creation_stores_no_token_text_and_replays_none(maker: Any, token_for: Any) -> None:
    session = APIClient()
    session.force_login(maker)
    headers = {"HTTP_IDEMPOTENCY_KEY": "create-ci-token-1"}
    body = {"name": "ci", "scopes": ["read"], "days": 7}

    first = session.post(TOKENS, body, format="json", **headers)
    assert first.status_code == 201
    text = first.json()["token"]
    secret = text.split("_", 2)[2]

    record = IdempotencyRecord.objects.get(key="create-ci-token-1")
    assert secret.encode() not in bytes(record.response_body)
    replay = session.post(TOKENS, body, format="json", **headers)
    assert replay["Idempotent-Replayed"] == "true"
    assert secret not in replay.content.decode()
    assert replay.status_code == 409
    error = replay.json()["error"]
    assert error["code"] == "token_not_shown_again"
    assert error["details"] == {"id": _token_of(text).pk, "name": "ci"}
    assert "cannot be shown again" in error["message"]
    assert ApiToken.objects.filter(user=maker, name="ci").count() == 1


def test_an_expired_parent_mints_nothing(maker: Any, token_for: Any) -> None:
    parent_text = token_for(maker, ["read"], days=1)
    ApiToken.objects.filter(pk=_token_of(parent_text).pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert _mint(parent_text, name="late").status_code == 401


def test_the_service_applies_the_rules_for_every_caller(maker: Any, token_for: Any) -> None:
    parent = _token_of(token_for(maker, ["read"], days=2))

    with pytest.raises(services.ScopeNotAllowed):
        services.api_token_create(
            user=maker, scopes=["read", "request"], parent=parent, context=AuditContext.system(), name="wider"
        )
    child, _ = services.api_token_create(user=maker, scopes=["read"], parent=parent, context=AuditContext.system())
    assert child.expires_at == parent.expires_at
