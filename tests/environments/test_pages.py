"""The environments pages: who sees what, admin-only changes, buttons that queue jobs."""

from __future__ import annotations

import uuid

import pytest

from alm_portal.accounts.models import Team
from alm_portal.jobs.models import Job
from environments.choices import CredentialStatus
from environments.models import Credential, Environment
from tests.environments.conftest import CANARY_SECRET

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.environments.urls")]


def _org(name):
    tenant = str(uuid.uuid4())
    return type(
        "Org",
        (),
        {
            "name": name,
            "url": f"https://127.0.0.1:9/{name}",
            "tenant_id": tenant,
            "authority": f"https://127.0.0.1:9/{tenant}",
            "client_id": str(uuid.uuid4()),
            "client_secret": CANARY_SECRET,
        },
    )


@pytest.fixture
def ours(register):
    return register(_org("contoso-test"))


@pytest.fixture
def theirs(register, outsider):
    return register(_org("fabrikam-test"), team=Team.objects.get(slug="fabrikam"))


def _form(team, **overrides):
    org = _org(overrides.pop("name", "registered-here"))
    data = {
        "name": org.name,
        "url": org.url,
        "kind": "test",
        "tenant_id": org.tenant_id,
        "authority": org.authority,
        "team": team.pk,
        "description": "",
        "is_active": "on",
        "client_id": org.client_id,
        "credential_type": "secret",
        "client_secret": CANARY_SECRET,
    }
    data.update(overrides)
    return data


def test_anonymous_visitors_are_sent_to_sign_in(client, ours):
    for url in ("/environments/", f"/environments/{ours.pk}/", "/environments/new/"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


def test_the_list_shows_the_makers_teams_environments_only(client, maker, ours, theirs):
    client.force_login(maker)
    page = client.get("/environments/").content.decode()
    assert "contoso-test" in page and "fabrikam-test" not in page
    assert "Register an environment" not in page


def test_the_detail_page_shows_health_and_credentials_but_never_the_secret(client, maker, ours):
    client.force_login(maker)
    response = client.get(f"/environments/{ours.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    credential = Credential.objects.get(environment=ours)
    assert credential.client_id in page
    assert "Unknown" in page  # health
    assert "Check now" not in page  # buttons are for admins
    assert CANARY_SECRET not in page


def test_another_teams_environment_is_404(client, maker, theirs):
    client.force_login(maker)
    for suffix in ("", "edit/"):
        assert client.get(f"/environments/{theirs.pk}/{suffix}").status_code == 404
    for suffix in ("check/", "sync/", "rotate/"):
        assert client.post(f"/environments/{theirs.pk}/{suffix}").status_code == 404


def test_auditors_read_every_environment_and_change_none(client, auditor, ours, theirs, team):
    client.force_login(auditor)
    assert client.get(f"/environments/{theirs.pk}/").status_code == 200
    assert client.get("/environments/new/").status_code == 403
    assert client.post("/environments/new/", _form(team)).status_code == 403
    for suffix in ("check/", "sync/", "rotate/", "edit/"):
        assert client.post(f"/environments/{ours.pk}/{suffix}").status_code == 403
    assert not Job.objects.exists()


@pytest.mark.parametrize("persona", ["maker", "approver"])
def test_makers_and_approvers_cannot_change_environments(client, request, persona, ours, team):
    client.force_login(request.getfixturevalue(persona))
    assert client.post("/environments/new/", _form(team)).status_code == 403
    for suffix in ("check/", "sync/", "rotate/", "edit/"):
        assert client.post(f"/environments/{ours.pk}/{suffix}").status_code == 403
    assert Environment.objects.count() == 1


def test_an_admin_registers_an_environment(client, admin_user, team):
    client.force_login(admin_user)
    assert client.get("/environments/new/").status_code == 200
    response = client.post("/environments/new/", _form(team))
    environment = Environment.objects.get(name="registered-here")
    assert response.status_code == 302
    assert response["Location"] == f"/environments/{environment.pk}/"
    assert Job.objects.filter(environment=environment, kind="health_check").exists()


def test_a_refused_registration_is_400_and_the_secret_is_not_rendered_back(client, admin_user, team):
    client.force_login(admin_user)
    response = client.post("/environments/new/", _form(team, url="https://contoso.crm.dynamics.com@evil.com"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "user information" in page
    assert CANARY_SECRET not in page
    assert not Environment.objects.exists()


def test_an_admin_edits_rotates_checks_and_syncs(client, admin_user, ours, team):
    client.force_login(admin_user)
    form = _form(team, name="contoso-test", description="Test ring")
    form["url"], form["tenant_id"], form["authority"] = ours.url, ours.tenant_id, ours.authority
    assert client.get(f"/environments/{ours.pk}/edit/").status_code == 200
    assert client.post(f"/environments/{ours.pk}/edit/", form).status_code == 302
    ours.refresh_from_db()
    assert ours.description == "Test ring"

    rotate = {"client_id": "new-client", "credential_type": "secret", "client_secret": "fresh-secret-value-1"}
    assert client.post(f"/environments/{ours.pk}/rotate/", rotate).status_code == 302
    assert Credential.objects.filter(environment=ours, status=CredentialStatus.PENDING_VERIFICATION).count() == 1

    assert client.post(f"/environments/{ours.pk}/check/").status_code == 302
    assert client.post(f"/environments/{ours.pk}/sync/").status_code == 302
    assert set(Job.objects.filter(environment=ours).values_list("kind", flat=True)) == {
        "health_check",
        "inventory_sync",
    }
    assert client.get(f"/environments/{ours.pk}/check/").status_code == 405
    page = client.get(f"/environments/{ours.pk}/").content.decode()
    assert "Check now" in page and "Sync now" in page
    assert "fresh-secret-value-1" not in page


def test_a_refused_rotation_is_400(client, admin_user, ours):
    client.force_login(admin_user)
    response = client.post(f"/environments/{ours.pk}/rotate/", {"client_id": "x", "credential_type": "secret"})
    assert response.status_code == 400
    assert "client secret" in response.content.decode().lower()
