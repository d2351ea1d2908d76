"""The environments API: shapes, scopes, team visibility, 202 jobs, and pinned query counts."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alm_portal.accounts.models import Team
from alm_portal.jobs.models import Job
from environments.choices import CredentialStatus
from environments.models import Credential, Environment
from tests.environments.conftest import CANARY_SECRET, events

pytestmark = pytest.mark.django_db

LIST = "/api/v1/environments/"


def _org(name: str) -> SimpleNamespace:
    """Enough of an org for registration; nothing listens there (these tests make no calls)."""
    tenant = str(uuid.uuid4())
    return SimpleNamespace(
        name=name,
        url=f"https://127.0.0.1:9/{name}",
        tenant_id=tenant,
        authority=f"https://127.0.0.1:9/{tenant}",
        client_id=str(uuid.uuid4()),
        client_secret=CANARY_SECRET,
    )


@pytest.fixture
def other_team(outsider):
    return Team.objects.get(slug="fabrikam")


@pytest.fixture
def ours(register):
    return register(_org("contoso-test"))


@pytest.fixture
def theirs(register, other_team):
    return register(_org("fabrikam-test"), team=other_team)


def _bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _as(api_client, user):
    api_client.force_authenticate(user=user)
    return api_client


def _create_body(owner, **overrides):
    org = _org(overrides.pop("org_name", "new-env"))
    body = {
        "name": org.name,
        "url": org.url,
        "kind": "production",
        "tenant_id": org.tenant_id,
        "authority": org.authority,
        "team": owner.pk,
        "client_id": org.client_id,
        "credential_type": "secret",
        "client_secret": CANARY_SECRET,
    }
    body.update(overrides)
    return body


# --- reading --------------------------------------------------------------------------------------------


def test_the_detail_shape_is_the_contract_and_has_no_secret(api_client, admin_user, ours, team):
    response = _as(api_client, admin_user).get(f"{LIST}{ours.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "id",
        "name",
        "url",
        "kind",
        "tenant_id",
        "authority",
        "team",
        "description",
        "client_id",
        "credential_type",
        "credential_expires_at",
        "is_active",
        "health",
        "inventory_synced_at",
        "created_at",
        "updated_at",
    }
    assert body["team"] == {"id": team.pk, "name": "Contoso"}
    assert body["credential_type"] == "secret"
    assert body["health"]["status"] == "unknown"
    assert set(body["health"]) >= {"status", "checked_at", "error"}
    assert body["health"]["throttled_responses"] == 0 and body["health"]["last_throttled_at"] is None
    assert body["created_at"].endswith("Z")
    assert CANARY_SECRET not in response.content.decode()


def test_makers_see_only_their_teams_environments(api_client, maker, ours, theirs):
    response = _as(api_client, maker).get(LIST)
    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["contoso-test"]
    assert response.json()["count"] == 1
    assert api_client.get(f"{LIST}{theirs.pk}/").status_code == 404
    for suffix in ("inventory/", "drift/", "solution-history/"):
        assert api_client.get(f"{LIST}{theirs.pk}/{suffix}").status_code == 404
        assert api_client.get(f"{LIST}{ours.pk}/{suffix}").status_code == 200


@pytest.mark.parametrize("persona", ["admin_user", "auditor"])
def test_admins_and_auditors_see_every_environment(api_client, request, persona, ours, theirs):
    user = request.getfixturevalue(persona)
    response = _as(api_client, user).get(LIST)
    assert {row["name"] for row in response.json()["results"]} == {"contoso-test", "fabrikam-test"}
    assert api_client.get(f"{LIST}{theirs.pk}/").status_code == 200


def test_an_unknown_id_is_404_with_the_error_shape(api_client, admin_user):
    response = _as(api_client, admin_user).get(f"{LIST}999999/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_filters_and_ordering(api_client, admin_user, ours, theirs):
    api = _as(api_client, admin_user)
    assert [r["name"] for r in api.get(LIST, {"search": "fabri"}).json()["results"]] == ["fabrikam-test"]
    assert [r["name"] for r in api.get(LIST, {"ordering": "-name"}).json()["results"]] == [
        "fabrikam-test",
        "contoso-test",
    ]
    assert api.get(LIST, {"kind": "production"}).json()["count"] == 0


def test_the_list_costs_the_same_number_of_queries_at_page_size_1_and_50(api_client, admin_user, register, team):
    for index in range(12):
        register(_org(f"env-{index:02d}"))
    api = _as(api_client, admin_user)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(LIST, {"page_size": 1}).json()["results"]) == 1
    with CaptureQueriesContext(connection) as large:
        assert len(api.get(LIST, {"page_size": 50}).json()["results"]) == 12
    assert len(small.captured_queries) == len(large.captured_queries)
    assert len(large.captured_queries) <= 6


def test_inventory_and_drift_shapes(api_client, maker, ours, register):
    from environments.models import InventoryInterval

    InventoryInterval.objects.create(
        environment=ours,
        unique_name="Core",
        version="1.0.0.0",
        is_managed=True,
        valid_from="2026-01-01T00:00:00Z",
        valid_to="2026-02-01T00:00:00Z",
    )
    InventoryInterval.objects.create(
        environment=ours, unique_name="Core", version="1.1.0.0", is_managed=True, valid_from="2026-02-01T00:00:00Z"
    )
    api = _as(api_client, maker)
    now = api.get(f"{LIST}{ours.pk}/inventory/").json()
    assert [(row["unique_name"], row["version"]) for row in now] == [("Core", "1.1.0.0")]
    assert {"unique_name", "version", "is_managed", "installed_on"} <= set(now[0])
    then = api.get(f"{LIST}{ours.pk}/inventory/", {"at": "2026-01-15T00:00:00Z"}).json()
    assert [row["version"] for row in then] == ["1.0.0.0"]
    bad = api.get(f"{LIST}{ours.pk}/inventory/", {"at": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"
    assert api.get(f"{LIST}{ours.pk}/drift/").json() == []
    assert api.get(f"{LIST}{ours.pk}/solution-history/").json()["results"] == []


# --- writing ----------------------------------------------------------------------------------------------


def test_admin_registers_an_environment_and_its_first_check_is_queued(api_client, admin_user, team):
    response = _as(api_client, admin_user).post(LIST, _create_body(team), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == f"{LIST}{body['id']}/"
    assert body["name"] == "new-env" and body["kind"] == "production"
    assert body["client_id"] and body["credential_type"] == "secret"
    assert "client_secret" not in body
    assert CANARY_SECRET not in response.content.decode()
    assert Job.objects.filter(environment_id=body["id"], kind="health_check").count() == 1
    created = events("environment.created")[0]
    assert created.actor_id == admin_user.pk


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "https://contoso.crm.dynamics.com@evil.com"}, "url"),
        ({"url": "http://169.254.169.254/"}, "url"),
        ({"authority": "https://evil.example.com/tenant"}, "authority"),
        ({"credential_type": "secret", "client_secret": ""}, "client_secret"),
        ({"kind": "staging"}, "kind"),
        ({"team": 999999}, "team"),
    ],
)
def test_bad_registrations_are_400_with_details_per_field(api_client, admin_user, team, overrides, field):
    response = _as(api_client, admin_user).post(LIST, _create_body(team, **overrides), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert not Environment.objects.exists()


def test_patch_changes_fields_and_a_new_secret_starts_a_rotation(api_client, admin_user, ours):
    api = _as(api_client, admin_user)
    response = api.patch(f"{LIST}{ours.pk}/", {"description": "Test ring"}, format="json")
    assert response.status_code == 200
    assert response.json()["description"] == "Test ring"

    response = api.patch(f"{LIST}{ours.pk}/", {"client_secret": "rotated-secret-value-123"}, format="json")
    assert response.status_code == 200
    pending = Credential.objects.get(environment=ours, status=CredentialStatus.PENDING_VERIFICATION)
    assert pending.client_id == Credential.objects.get(environment=ours, status="active").client_id
    assert Job.objects.get(environment=ours, kind="health_check").params == {"credential_id": pending.pk}
    assert "rotated-secret-value-123" not in response.content.decode()

    response = api.patch(f"{LIST}{ours.pk}/", {"client_id": "only-an-id"}, format="json")
    assert response.status_code == 400
    assert "client_secret" in response.json()["error"]["details"]


def test_patch_refuses_urls_outside_the_policy(api_client, admin_user, ours):
    response = _as(api_client, admin_user).patch(
        f"{LIST}{ours.pk}/", {"url": "https://contoso.crm.dynamics.com.evil.com"}, format="json"
    )
    assert response.status_code == 400
    assert "url" in response.json()["error"]["details"]


def test_check_and_sync_answer_202_with_the_job_and_its_location(api_client, admin_user, ours):
    api = _as(api_client, admin_user)
    for action, kind in (("check", "health_check"), ("sync", "inventory_sync")):
        response = api.post(f"{LIST}{ours.pk}/{action}/")
        assert response.status_code == 202
        job = response.json()["job"]
        assert (job["kind"], job["status"], job["progress"]) == (kind, "pending", 0)
        assert response["Location"] == f"/api/v1/jobs/{job['id']}/"


def test_syncing_an_inactive_environment_is_409(api_client, admin_user, ours):
    api = _as(api_client, admin_user)
    api.patch(f"{LIST}{ours.pk}/", {"is_active": False}, format="json")
    response = api.post(f"{LIST}{ours.pk}/sync/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"


# --- without permission ----------------------------------------------------------------------------------


WRITES = [
    ("post", LIST, "create"),
    ("patch", "{detail}", "update"),
    ("put", "{detail}", "update"),
    ("post", "{detail}check/", "check"),
    ("post", "{detail}sync/", "sync"),
]
READS = ["", "{detail}", "{detail}inventory/", "{detail}drift/", "{detail}solution-history/"]


def _url(template, environment):
    return template.format(detail=f"{LIST}{environment.pk}/") if template else LIST


@pytest.mark.parametrize(("method", "template", "_name"), WRITES)
@pytest.mark.parametrize("persona", ["maker", "approver", "auditor", "outsider"])
def test_only_admins_write(api_client, request, persona, method, template, _name, ours, team):
    user = request.getfixturevalue(persona)
    response = getattr(_as(api_client, user), method)(_url(template, ours), _create_body(team), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not Job.objects.exists()
    assert Environment.objects.count() == 1


@pytest.mark.parametrize(("method", "template", "_name"), WRITES)
def test_a_read_only_token_of_an_admin_cannot_write(api_client, admin_user, token_for, method, template, _name, ours):
    response = getattr(api_client, method)(_url(template, ours), {}, format="json", **_bearer(token_for(admin_user)))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_insufficient"


@pytest.mark.parametrize("template", READS + [t for _, t, _ in WRITES])
def test_anonymous_gets_401(api_client, template, ours):
    response = api_client.get(_url(template, ours))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("template", READS[1:])
def test_a_maker_of_another_team_gets_404(api_client, outsider, template, ours):
    response = _as(api_client, outsider).get(_url(template, ours))
    assert response.status_code == 404


@pytest.mark.parametrize("template", READS)
def test_an_auditor_reads_everything(api_client, auditor, template, ours):
    assert _as(api_client, auditor).get(_url(template, ours)).status_code == 200


def test_a_read_token_reads(api_client, maker, token_for, ours):
    assert api_client.get(LIST, **_bearer(token_for(maker))).json()["count"] == 1
