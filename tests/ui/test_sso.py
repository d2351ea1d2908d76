"""Entra ID sign-in against the emulator's authority and its demo identities (real HTTPS, msal's
authorization-code flow with state, nonce and PKCE)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from alm_portal.accounts.models import User
from alm_portal.audit.models import AuditEvent
from tests.support.emulator import start_emulator

pytestmark = pytest.mark.django_db
REDIRECT_URI = "http://testserver/accounts/sso/callback/"


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any]]]:
    state = tmp_path_factory.mktemp("entra")
    with start_emulator(state, "--seed", "demo", "--sso-redirect-uri", REDIRECT_URI) as server:
        yield server, json.loads((Path(state) / "demo-credentials.json").read_text())


@pytest.fixture
def sso_settings(settings: Any, entra: tuple[Any, dict[str, Any]]) -> Any:
    server, credentials = entra
    settings.ALM_SSO_AUTHORITY = credentials["authority"]
    settings.ALM_SSO_CLIENT_ID = credentials["sso_client"]["client_id"]
    settings.ALM_SSO_CLIENT_SECRET = credentials["sso_client"]["client_secret"]
    settings.ALM_DATAVERSE_CA_BUNDLE = str(server.ca_file)
    return settings


def _sign_in(client: Client, server: Any, who: str, *, tamper_state: bool = False) -> Any:
    """Click the SSO button, pick `who` on the emulator's page, follow the answer back to the portal."""
    start = client.get(reverse("accounts:sso-login"))
    assert start.status_code == 302
    auth_uri = start["Location"]
    assert "code_challenge=" in auth_uri and "nonce=" in auth_uri and "state=" in auth_uri
    page = server.session().get(auth_uri)
    assert f'data-testid="signin-{who}"' in page.text
    parts = urlsplit(auth_uri)
    answer = server.session().post(
        f"{parts.scheme}://{parts.netloc}{parts.path}?{parts.query}",
        data={"username": f"{who}@contoso.example"},
        allow_redirects=False,
    )
    assert answer.status_code in (302, 303), answer.text[:300]
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/accounts/sso/callback/"
    query = back.query.replace("state=", "state=x") if tamper_state else back.query
    return client.get(f"{back.path}?{query}")


def test_the_sign_in_page_offers_sso_only_when_configured(settings: Any, sso_settings: Any) -> None:
    assert 'id="sso-button"' in Client().get(reverse("accounts:login")).content.decode()
    settings.ALM_SSO_AUTHORITY = None
    assert 'id="sso-button"' not in Client().get(reverse("accounts:login")).content.decode()
    assert Client().get(reverse("accounts:sso-login")).status_code == 404


def test_a_maker_signs_in_and_is_created_by_object_id_with_the_app_role(sso_settings: Any, entra: Any) -> None:
    server, credentials = entra
    client = Client()
    response = _sign_in(client, server, "maker")
    assert response.status_code == 302 and response["Location"] == "/"
    oid = next(i["object_id"] for i in credentials["identities"] if i["username"] == "maker@contoso.example")
    user = User.objects.get(entra_object_id=oid)
    assert user.role == "maker" and user.is_active
    assert client.get(reverse("home")).status_code == 200
    event = AuditEvent.objects.filter(action="auth.signed_in").latest("seq")
    assert event.after == {"method": "entra"} and event.actor_id == user.pk


def test_a_local_demo_account_is_linked_and_its_role_follows_the_app_role(
    sso_settings: Any, entra: Any, make_user: Any
) -> None:
    sso_settings.ALM_SSO_LINK_BY_USERNAME = True  # the demo's setting
    server, _ = entra
    local = make_user("approver", "maker")
    _sign_in(Client(), server, "approver")
    local.refresh_from_db()
    assert local.entra_object_id and local.role == "approver"
    assert AuditEvent.objects.filter(action="user.role_changed", object_id=str(local.pk)).exists()


def test_an_identity_without_an_app_role_is_disabled_and_refused(sso_settings: Any, entra: Any, make_user: Any) -> None:
    server, credentials = entra
    existing = make_user("outsider", "maker")
    # Signed in before, when the identity still had its app role: linked by object id.
    oid = next(i["object_id"] for i in credentials["identities"] if i["username"] == "outsider@contoso.example")
    User.objects.filter(pk=existing.pk).update(entra_object_id=oid)
    client = Client()
    response = _sign_in(client, server, "outsider")
    assert response["Location"] == reverse("accounts:login")
    page = client.get(reverse("accounts:login")).content.decode()
    assert "no ALM Portal app role" in page
    existing.refresh_from_db()
    assert not existing.is_active
    assert AuditEvent.objects.filter(action="user.disabled", object_id=str(existing.pk)).exists()
    assert AuditEvent.objects.filter(action="auth.sso_refused", outcome="denied").exists()
    assert client.get(reverse("home")).status_code == 302


def test_a_tampered_state_is_refused(sso_settings: Any, entra: Any) -> None:
    server, _ = entra
    client = Client()
    response = _sign_in(client, server, "maker", tamper_state=True)
    assert response["Location"] == reverse("accounts:login")
    assert "did not match" in client.get(reverse("accounts:login")).content.decode()
    assert not User.objects.filter(username="maker@contoso.example").exists()
    failed = AuditEvent.objects.get(action="auth.sso_failed")
    assert failed.outcome == "failed" and failed.message.startswith("answer did not match the flow")


def test_a_callback_without_a_sign_in_in_progress_is_refused_and_audited(sso_settings: Any) -> None:
    client = Client()
    response = client.get("/accounts/sso/callback/?code=stolen&state=whatever")
    assert response["Location"] == reverse("accounts:login")
    assert "took too long or was started elsewhere" in client.get(reverse("accounts:login")).content.decode()
    assert AuditEvent.objects.get(action="auth.sso_failed").message == "no sign-in in progress for this browser"


def test_signing_in_with_entra_id_gives_a_new_session_key(sso_settings: Any, entra: Any) -> None:
    server, _ = entra
    client = Client()
    client.get(reverse("accounts:sso-login"))  # the flow is kept in an anonymous session
    anonymous_key = client.cookies["sessionid"].value
    _sign_in(client, server, "maker")
    assert client.cookies["sessionid"].value != anonymous_key
    assert not Session.objects.filter(session_key=anonymous_key).exists()
    assert client.get(reverse("home")).status_code == 200


def test_without_linking_a_local_account_of_the_same_name_is_left_alone(
    sso_settings: Any, entra: Any, make_user: Any
) -> None:
    assert sso_settings.ALM_SSO_LINK_BY_USERNAME is False  # the default
    server, credentials = entra
    local = make_user("approver", "maker")
    _sign_in(Client(), server, "approver")
    local.refresh_from_db()
    assert local.entra_object_id is None and local.role == "maker"
    oid = next(i["object_id"] for i in credentials["identities"] if i["username"] == "approver@contoso.example")
    created = User.objects.get(entra_object_id=oid)
    assert created.username == "approver@contoso.example" and created.role == "approver"


def test_an_unlinked_account_holding_the_username_refuses_the_sign_in(
    sso_settings: Any, entra: Any, make_user: Any
) -> None:
    server, _ = entra
    squatter = make_user("maker@contoso.example", "admin")
    client = Client()
    response = _sign_in(client, server, "maker")
    assert response["Location"] == reverse("accounts:login")
    assert "already exists and is not linked" in client.get(reverse("accounts:login")).content.decode()
    squatter.refresh_from_db()
    assert squatter.entra_object_id is None and squatter.role == "admin" and squatter.is_active
    refused = AuditEvent.objects.get(action="auth.sso_refused")
    assert refused.outcome == "denied" and refused.message == "username taken by an unlinked account"


def test_the_role_map_is_configuration(sso_settings: Any, entra: Any) -> None:
    server, _ = entra
    sso_settings.ALM_SSO_ROLE_MAP = {"ALM.Maker": "auditor"}
    client = Client()
    _sign_in(client, server, "maker")
    assert User.objects.get(username="maker@contoso.example").role == "auditor"
    # ALM.Approver is not in this map: that identity has no mapped role and is refused.
    _sign_in(Client(), server, "approver")
    assert not User.objects.filter(username="approver@contoso.example").exists()


def test_app_roles_map_to_teams_by_configuration(sso_settings: Any, entra: Any, team: Any) -> None:
    server, _ = entra
    sso_settings.ALM_SSO_GROUP_TEAM_MAP = {"ALM.Maker": team.slug}
    _sign_in(Client(), server, "maker")
    maker = User.objects.get(username="maker@contoso.example")
    assert list(maker.teams.values_list("slug", flat=True)) == [team.slug]
    assert AuditEvent.objects.filter(action="team.member_added", related_id=str(maker.pk)).count() == 1
