"""Who an Entra ID sign-in becomes: only the account linked to its tenant and object id (docs/security.md,
"Identity linking"). The review's attacks, against the emulator's real authorization-code flow, in the
demo's setting (the only place a first sign-in may link a local account, by its full user principal name
in the demo's own domain and tenant)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from alm_portal.accounts import services, sso
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from tests.ui.sso_support import (  # noqa: F401 - fixtures are found by name
    demo_linking_fixture,
    entra_fixture,
    sign_in,
    sso_settings_fixture,
)

pytestmark = pytest.mark.django_db


def _add_identity(server: Any, tenant_id: str, username: str, roles: list[str]) -> dict[str, Any]:
    return server.admin("POST", f"/tenants/{tenant_id}/identities", {"username": username, "roles": roles})


def _who(client: Client) -> str:
    return str(client.get("/api/v1/me/").json()["username"])


def test_an_approver_of_another_domain_does_not_sign_in_as_the_local_approver2(
    demo_linking: Any, entra: Any, make_user: Any, team: Any, token_for: Any
) -> None:
    server, credentials = entra
    local = make_user("approver2", "approver", team)
    _add_identity(server, credentials["tenant_id"], "approver2@attacker.example", ["ALM.Approver"])
    client = Client()

    sign_in(client, server, "approver2", domain="attacker.example")

    assert _who(client) == "approver2@attacker.example"
    local.refresh_from_db()
    assert local.entra_object_id is None and local.entra_tenant_id is None
    assert local.role == "approver" and local.is_active and local.teams.filter(pk=team.pk).exists()
    newcomer = User.objects.get(username="approver2@attacker.example")
    assert newcomer.pk != local.pk and not newcomer.teams.exists()
    assert client.get(reverse("deployments:approvals-inbox")).context["rows"] == []


def test_an_identity_without_a_role_from_another_domain_leaves_the_local_auditor_alone(
    demo_linking: Any, entra: Any, make_user: Any, token_for: Any
) -> None:
    server, credentials = entra
    local = make_user("auditor", "auditor", password="auditor-password-1")
    token = token_for(local, ["read"])
    _add_identity(server, credentials["tenant_id"], "auditor@attacker.example", [])

    response = sign_in(Client(), server, "auditor", domain="attacker.example")

    assert response["Location"] == reverse("accounts:login")
    local.refresh_from_db()
    assert local.is_active and local.entra_object_id is None
    assert not AuditEvent.objects.filter(action="user.disabled").exists()
    assert Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert Client().login(username="auditor", password="auditor-password-1")
    refused = AuditEvent.objects.get(action="auth.sso_refused")
    assert refused.message == "no app role" and refused.object_id == ""
    assert refused.after["preferred_username"] == "auditor@attacker.example"


def test_the_demo_links_its_own_domain_and_nothing_else_by_name(demo_linking: Any, entra: Any, make_user: Any) -> None:
    server, credentials = entra
    local = make_user("maker2", "maker")
    # A look-alike domain that merely ends with the demo's is not the demo's domain.
    _add_identity(server, credentials["tenant_id"], "maker2@evil-contoso.example", ["ALM.Maker"])
    look_alike = Client()
    sign_in(look_alike, server, "maker2", domain="evil-contoso.example")
    assert _who(look_alike) == "maker2@evil-contoso.example"
    local.refresh_from_db()
    assert local.entra_object_id is None

    genuine = Client()
    sign_in(genuine, server, "maker2")
    assert _who(genuine) == "maker2"
    local.refresh_from_db()
    assert local.entra_tenant_id == credentials["tenant_id"]


def test_an_admin_links_a_local_account_on_the_people_page_and_the_sign_in_lands_there(
    sso_settings: Any, entra: Any, make_user: Any
) -> None:
    server, credentials = entra
    local = make_user("approver", "approver")
    admin = make_user("ada", "admin")
    first = Client()
    sign_in(first, server, "approver")
    identity = next(i for i in credentials["identities"] if i["username"] == "approver@contoso.example")
    assert _who(first) == "approver@contoso.example"
    # Outside the demo nothing links by name: the first sign-in made its own account. An admin moves the
    # identity to the local account instead: unlink it from the new one first (it is taken), then link.
    created = User.objects.get(username="approver@contoso.example")
    browser = Client()
    browser.force_login(admin)
    taken = browser.post(
        reverse("accounts:user-entra-link", args=[local.pk]),
        {"tenant_id": credentials["tenant_id"], "object_id": identity["object_id"]},
        follow=True,
    )
    assert f"already linked to {created.username}" in taken.content.decode()
    User.objects.filter(pk=created.pk).update(entra_object_id=None, entra_tenant_id=None, is_active=False)

    linked = browser.post(
        reverse("accounts:user-entra-link", args=[local.pk]),
        {"tenant_id": credentials["tenant_id"].upper(), "object_id": identity["object_id"]},
        follow=True,
    )

    assert "now signs in with that Entra ID identity" in linked.content.decode()
    event = AuditEvent.objects.get(action="user.sso_linked", object_id=str(local.pk))
    assert event.actor_id == admin.pk and event.after["how"] == "linked by an admin"
    assert event.before == {"entra_tenant_id": None, "entra_object_id": None}
    client = Client()
    sign_in(client, server, "approver")
    assert _who(client) == "approver"


def test_people_refuse_anything_but_a_tenant_and_object_id(make_user: Any) -> None:
    local = make_user("someone", "maker")
    admin = make_user("ada", "admin")
    browser = Client()
    browser.force_login(admin)

    page = browser.post(
        reverse("accounts:user-entra-link", args=[local.pk]),
        {"tenant_id": "contoso.example", "object_id": "someone@contoso.example"},
        follow=True,
    ).content.decode()

    assert "Must be a GUID" in page
    local.refresh_from_db()
    assert local.entra_object_id is None
    maker = Client()
    maker.force_login(local)
    assert maker.post(reverse("accounts:user-entra-link", args=[local.pk]), {}).status_code == 403


def test_the_command_links_and_refuses_in_one_line(make_user: Any, capsys: Any) -> None:
    make_user("maker", "maker")
    tenant, oid = "5b0b0d7e-2f43-4c1e-9a4e-0d3e7c2a9f10", "0a000000-0000-4000-8000-000000000002"

    call_command("link_entra_identity", "maker", "--tenant-id", tenant, "--object-id", oid)

    assert User.objects.get(username="maker").entra_object_id == oid
    make_user("other", "maker")
    with pytest.raises(SystemExit) as exit_info:
        call_command("link_entra_identity", "other", "--tenant-id", tenant, "--object-id", oid)
    assert exit_info.value.code == 2 and "already linked to maker" in capsys.readouterr().err


# --- the claims alone (no HTTP flow): tenants the emulator's single sign-in client cannot show ------------

TENANT_A = "aaaaaaaa-0000-4000-8000-00000000000a"
TENANT_B = "bbbbbbbb-0000-4000-8000-00000000000b"
OID = "0c000000-0000-4000-8000-000000000001"


def _claims(tid: str, username: str, roles: tuple[str, ...] = ("ALM.Maker",)) -> dict[str, Any]:
    return {"tid": tid, "oid": OID, "preferred_username": username, "name": "Someone", "roles": list(roles)}


def test_the_same_object_id_in_another_tenant_is_another_person(settings: Any, make_user: Any) -> None:
    settings.ALM_SSO_AUTHORITY = f"https://login.microsoftonline.com/{TENANT_A}"
    linked = make_user("mia", "approver")
    services.user_link_entra_identity(user=linked, tenant_id=TENANT_A, object_id=OID, context=AuditContext.system())

    other = sso.user_from_claims(claims=_claims(TENANT_B, "mia@tenant-b.example"), context=AuditContext.system())

    assert other.pk != linked.pk and (other.entra_tenant_id, other.entra_object_id) == (TENANT_B, OID)
    linked.refresh_from_db()
    assert (linked.role, linked.entra_tenant_id) == ("approver", TENANT_A)


def test_a_sign_in_from_another_tenant_without_a_role_disables_nobody(settings: Any, make_user: Any) -> None:
    settings.ALM_SSO_AUTHORITY = f"https://login.microsoftonline.com/{TENANT_A}"
    linked = make_user("mia", "approver")
    services.user_link_entra_identity(user=linked, tenant_id=TENANT_A, object_id=OID, context=AuditContext.system())

    with pytest.raises(sso.SignInRefused):
        sso.user_from_claims(claims=_claims(TENANT_B, "mia@tenant-b.example", ()), context=AuditContext.system())

    linked.refresh_from_db()
    assert linked.is_active


def test_an_account_linked_before_tenants_were_recorded_counts_for_the_configured_tenant_only(
    settings: Any, make_user: Any
) -> None:
    settings.ALM_SSO_AUTHORITY = f"https://login.microsoftonline.com/{TENANT_A}"
    legacy = make_user("mia", "maker")
    User.objects.filter(pk=legacy.pk).update(entra_object_id=OID)  # as the old unique oid column left it

    with pytest.raises(sso.SignInRefused, match="already exists and is not linked"):
        sso.user_from_claims(claims=_claims(TENANT_B, "mia"), context=AuditContext.system())
    assert sso.user_from_claims(claims=_claims(TENANT_A, "mia"), context=AuditContext.system()).pk == legacy.pk

    legacy.refresh_from_db()
    assert legacy.entra_tenant_id == TENANT_A
    assert AuditEvent.objects.get(action="user.sso_linked").after["how"] == "the tenant the authority names"


def test_a_token_without_tenant_or_object_id_is_refused(settings: Any) -> None:
    with pytest.raises(sso.SignInRefused, match="no tenant or object id"):
        sso.user_from_claims(claims={"oid": OID, "roles": ["ALM.Maker"]}, context=AuditContext.system())
