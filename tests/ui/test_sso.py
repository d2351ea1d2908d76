"""Entra ID sign-in against the emulator's authority and its demo identities (real HTTPS, msal's
authorization-code flow with state, nonce and PKCE)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from alm_portal.accounts.models import User
from alm_portal.audit.models import AuditEvent
from tests.ui.sso_support import (  # noqa: F401 - fixtures are found by name
    demo_linking_fixture,
    entra_fixture,
    sign_in,
    sso_settings_fixture,
)

pytestmark = pytest.mark.django_db


def test_the_sign_in_page_offers_sso_only_when_configured(settings: Any, sso_settings: Any) -> None:
    assert 'id="sso-button"' in Client().get(reverse("accounts:login")).content.decode()
    settings.ALM_SSO_AUTHORITY = None
    assert 'id="sso-button"' not in Client().get(reverse("accounts:login")).content.decode()
    assert Client().get(reverse("accounts:sso-login")).status_code == 404


def test_a_maker_signs_in_and_is_created_by_object_id_with_the_app_role(sso_settings: Any, entra: Any) -> None:
    server, credentials = entra
    client = Client()
    response = sign_in(client, server, "maker")
    assert response.status_code == 302 and response["Location"] == "/"
    oid = next(i["object_id"] for i in credentials["identities"] if i["username"] == "maker@contoso.example")
    user = User.objects.get(entra_object_id=oid)
    assert user.role == "maker" and user.is_active
    assert client.get(reverse("home")).status_code == 200
    event = AuditEvent.objects.filter(action="auth.signed_in").latest("seq")
    assert event.after == {"method": "entra"} and event.actor_id == user.pk


def test_a_local_demo_account_is_linked_and_its_role_follows_the_app_role(
    demo_linking: Any, entra: Any, make_user: Any
) -> None:
    server, credentials = entra
    local = make_user("approver", "maker")
    sign_in(Client(), server, "approver")
    local.refresh_from_db()
    oid = next(i["object_id"] for i in credentials["identities"] if i["username"] == "approver@contoso.example")
    assert (local.entra_tenant_id, local.entra_object_id) == (credentials["tenant_id"], oid)
    assert local.role == "approver"
    linked = AuditEvent.objects.get(action="user.sso_linked", object_id=str(local.pk))
    assert linked.after["how"] == "the demo's own domain and tenant"
    assert AuditEvent.objects.filter(action="user.role_changed", object_id=str(local.pk)).exists()


def test_an_identity_without_an_app_role_is_disabled_and_refused(sso_settings: Any, entra: Any, make_user: Any) -> None:
    server, credentials = entra
    existing = make_user("outsider", "maker")
    # Signed in before, when the identity still had its app role: linked by object id.
    oid = next(i["object_id"] for i in credentials["identities"] if i["username"] == "outsider@contoso.example")
    User.objects.filter(pk=existing.pk).update(entra_object_id=oid)
    client = Client()
    response = sign_in(client, server, "outsider")
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
    response = sign_in(client, server, "maker", tamper_state=True)
    assert response["Location"] == reverse("accounts:login")
    assert "did not match" in client.get(reverse("accounts:login")).content.decode()
    assert not User.objects.filter(username="maker@contoso.example").exists()
    failed = AuditEvent.objects.get(action="auth.sso_failed")
    assert failed.outcome == "failed" and failed.message.startswith("answer did not match the flow")


def test_a_nonce_removed_at_the_authorize_step_is_a_clean_refusal(sso_settings: Any, entra: Any) -> None:
    """The review removed `nonce` from the authorize request: the callback answered 500 and audited nothing."""
    server, _ = entra
    client = Client(raise_request_exception=False)

    response = sign_in(client, server, "maker", drop_nonce=True)

    assert response.status_code == 302 and response["Location"] == reverse("accounts:login")
    assert "did not match" in client.get(reverse("accounts:login")).content.decode()
    assert not User.objects.filter(username="maker@contoso.example").exists()
    failed = AuditEvent.objects.get(action="auth.sso_failed")
    assert failed.outcome == "failed" and failed.message.startswith("id_token did not match the flow")
    assert client.get(reverse("home")).status_code == 302  # not signed in


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
    sign_in(client, server, "maker")
    assert client.cookies["sessionid"].value != anonymous_key
    assert not Session.objects.filter(session_key=anonymous_key).exists()
    assert client.get(reverse("home")).status_code == 200


def test_without_linking_a_local_account_of_the_same_name_is_left_alone(
    sso_settings: Any, entra: Any, make_user: Any
) -> None:
    assert sso_settings.ALM_SSO_DEMO_LINKING is None  # anywhere but the demo
    server, credentials = entra
    local = make_user("approver", "maker")
    sign_in(Client(), server, "approver")
    local.refresh_from_db()
    assert local.entra_object_id is None and local.role == "maker"
    oid = next(i["object_id"] for i in credentials["identities"] if i["username"] == "approver@contoso.example")
    created = User.objects.get(entra_object_id=oid)
    assert created.username == "approver@contoso.example" and created.role == "approver"


def test_an_unlinked_account_holding_the_username_refuses_thesign_in(
    sso_settings: Any, entra: Any, make_user: Any
) -> None:
    server, _ = entra
    squatter = make_user("maker@contoso.example", "admin")
    client = Client()
    response = sign_in(client, server, "maker")
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
    sign_in(client, server, "maker")
    assert User.objects.get(username="maker@contoso.example").role == "auditor"
    # ALM.Approver is not in this map: that identity has no mapped role and is refused.
    sign_in(Client(), server, "approver")
    assert not User.objects.filter(username="approver@contoso.example").exists()


def test_app_roles_map_to_teams_by_configuration(sso_settings: Any, entra: Any, team: Any) -> None:
    server, _ = entra
    sso_settings.ALM_SSO_GROUP_TEAM_MAP = {"ALM.Maker": team.slug}
    sign_in(Client(), server, "maker")
    maker = User.objects.get(username="maker@contoso.example")
    assert list(maker.teams.values_list("slug", flat=True)) == [team.slug]
    assert AuditEvent.objects.filter(action="team.member_added", related_id=str(maker.pk)).count() == 1
