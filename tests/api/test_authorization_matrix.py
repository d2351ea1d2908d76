"""The authorization matrix (issue 6): every /api/v1/ operation, enumerated from the URL resolver, against
every persona, with the status each must get.

Requests carry an empty JSON body: a persona that is allowed through authentication, scopes and
visibility reaches validation (400) or the workflow's own refusal, so the matrix shows exactly where
each persona stops. Each request runs in a savepoint that is rolled back, so no row changes between
cells. A URL the resolver has but the matrix lacks (or the other way round) fails the test: a new
endpoint cannot ship without saying who may call it.

Columns: anonymous, maker (contoso), maker2 (fabrikam, another team), approver (contoso, named on the
stages), admin, auditor, readonly (an admin's token with only the `read` scope).
"""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.api.matrix_support import api_endpoints, call, concrete
from tests.support.api import PERSONAS

pytestmark = pytest.mark.django_db

MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    ("DELETE", "/api/v1/pipelines/{pk}/"): (401, 403, 403, 403, 409, 403, 403),
    ("DELETE", "/api/v1/stages/{pk}/freezes/{freeze_id}/"): (401, 403, 403, 403, 204, 403, 403),
    ("DELETE", "/api/v1/stages/{pk}/"): (401, 403, 403, 403, 204, 403, 403),
    ("DELETE", "/api/v1/stages/{pk}/windows/{window_id}/"): (401, 403, 403, 403, 204, 403, 403),
    ("DELETE", "/api/v1/webhooks/{pk}/"): (401, 403, 403, 403, 204, 403, 403),
    ("GET", "/api/v1/audit-events/"): (401, 403, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/audit-events/export/"): (401, 403, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/audit-events/verification/"): (401, 403, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/environments/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/environments/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/environments/{pk}/drift/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/environments/{pk}/inventory/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/environments/{pk}/solution-history/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/jobs/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/jobs/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/me/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/me/notifications/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/pipelines/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/pipelines/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/promotions/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/promotions/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/promotions/{pk}/rollback-plan/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/solutions/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/solutions/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/solutions/{pk}/versions/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/stages/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/stages/{pk}/settings/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/stages/{pk}/settings/check/"): (401, 400, 404, 400, 400, 400, 400),
    ("GET", "/api/v1/tokens/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/versions/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/versions/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/versions/{pk}/diff/"): (401, 400, 400, 400, 400, 400, 400),
    ("GET", "/api/v1/versions/{pk}/diff/{other_id}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/versions/{pk}/download/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/webhooks/"): (401, 403, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/webhooks/{pk}/"): (401, 403, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/webhooks/{pk}/deliveries/"): (401, 403, 403, 403, 200, 200, 200),
    ("PATCH", "/api/v1/environments/{pk}/"): (401, 403, 403, 403, 200, 403, 403),
    ("PATCH", "/api/v1/pipelines/{pk}/"): (401, 403, 403, 403, 200, 403, 403),
    ("PATCH", "/api/v1/stages/{pk}/"): (401, 403, 403, 403, 200, 403, 403),
    ("PATCH", "/api/v1/stages/{pk}/freezes/{freeze_id}/"): (401, 403, 403, 403, 200, 403, 403),
    ("PATCH", "/api/v1/stages/{pk}/windows/{window_id}/"): (401, 403, 403, 403, 200, 403, 403),
    ("PATCH", "/api/v1/webhooks/{pk}/"): (401, 403, 403, 403, 200, 403, 403),
    ("POST", "/api/v1/audit-events/verification/"): (401, 403, 403, 403, 202, 202, 202),
    ("POST", "/api/v1/environments/"): (401, 403, 403, 403, 400, 403, 403),
    ("POST", "/api/v1/environments/{pk}/check/"): (401, 403, 403, 403, 202, 403, 403),
    ("POST", "/api/v1/environments/{pk}/sync/"): (401, 403, 403, 403, 202, 403, 403),
    ("POST", "/api/v1/jobs/{pk}/resolve/"): (401, 403, 403, 403, 400, 403, 403),
    ("POST", "/api/v1/pipelines/"): (401, 403, 403, 403, 400, 403, 403),
    ("POST", "/api/v1/pipelines/{pk}/stages/"): (401, 403, 403, 403, 400, 403, 403),
    ("POST", "/api/v1/pipelines/{pk}/reorder/"): (401, 403, 403, 403, 400, 403, 403),
    ("POST", "/api/v1/promotions/"): (401, 400, 400, 400, 400, 403, 403),
    ("POST", "/api/v1/promotions/{pk}/approve/"): (401, 403, 403, 409, 403, 403, 403),
    ("POST", "/api/v1/promotions/{pk}/cancel/"): (401, 400, 404, 400, 400, 403, 403),
    ("POST", "/api/v1/promotions/{pk}/reject/"): (401, 403, 403, 400, 400, 403, 403),
    ("POST", "/api/v1/promotions/{pk}/retry/"): (401, 409, 404, 409, 409, 403, 403),
    ("POST", "/api/v1/promotions/{pk}/rollback/"): (401, 400, 404, 400, 400, 403, 403),
    ("POST", "/api/v1/solutions/"): (401, 400, 400, 400, 400, 403, 403),
    ("POST", "/api/v1/solutions/{pk}/export/"): (401, 202, 404, 202, 202, 403, 403),
    ("POST", "/api/v1/stages/{pk}/freezes/"): (401, 403, 403, 403, 400, 403, 403),
    ("POST", "/api/v1/stages/{pk}/windows/"): (401, 403, 403, 403, 400, 403, 403),
    ("POST", "/api/v1/tokens/"): (401, 201, 201, 201, 201, 201, 201),
    ("POST", "/api/v1/tokens/{pk}/revoke/"): (401, 200, 404, 404, 404, 404, 404),
    ("POST", "/api/v1/versions/"): (401, 400, 400, 400, 400, 403, 403),
    ("POST", "/api/v1/versions/upload/"): (401, 400, 400, 400, 400, 403, 403),
    ("POST", "/api/v1/webhooks/"): (401, 403, 403, 403, 400, 403, 403),
    ("POST", "/api/v1/webhooks/{pk}/test/"): (401, 403, 403, 403, 202, 403, 403),
    ("PUT", "/api/v1/environments/{pk}/"): (401, 403, 403, 403, 400, 403, 403),
    ("PUT", "/api/v1/me/notifications/"): (401, 400, 400, 400, 400, 400, 400),
    ("PUT", "/api/v1/pipelines/{pk}/"): (401, 403, 403, 403, 400, 403, 403),
    ("PUT", "/api/v1/stages/{pk}/"): (401, 403, 403, 403, 400, 403, 403),
    ("PUT", "/api/v1/stages/{pk}/settings/"): (401, 403, 403, 403, 200, 403, 403),
    ("PUT", "/api/v1/webhooks/{pk}/"): (401, 403, 403, 403, 400, 403, 403),
}


@pytest.fixture
def quiet_refusals(monkeypatch):
    """Denied requests are audited in a transaction of their own, which cannot open inside the savepoint
    each cell runs in; the matrix is about statuses (tests/api/test_audit_api.py covers the events)."""
    monkeypatch.setattr("alm_portal.api.exceptions.record_outcome", lambda **kwargs: None)
    # The rollback plan reads the target best effort; these environments do not exist, so use the inventory.
    monkeypatch.setattr("deployments.rollback._plan_client", lambda promotion, factory: None)


def test_the_matrix_names_every_api_operation():
    enumerated = set(api_endpoints())
    assert len(enumerated) > 50
    assert sorted(enumerated - set(MATRIX)) == [], "operations without an entry in the authorization matrix"
    assert sorted(set(MATRIX) - enumerated) == [], "matrix entries for operations that no longer exist"


def test_every_persona_gets_the_status_the_matrix_says(api_world, quiet_refusals):
    failures = []
    for (method, path), expected in sorted(MATRIX.items()):
        url = concrete(path, api_world.ids)
        for persona, status in zip(PERSONAS, expected, strict=True):
            with transaction.atomic():
                response = call(api_world.client(persona), method, url)
                transaction.set_rollback(True)
            if response.status_code != status:
                failures.append(f"{method} {url} as {persona}: {response.status_code}, expected {status}")
            elif status >= 400 and method != "DELETE":
                assert set(response.json()) == {"error"}, (method, url, persona)
            if persona == "anonymous":
                assert response["WWW-Authenticate"].startswith("Bearer"), (method, url)
    assert failures == []


def test_a_token_never_exceeds_its_scopes_even_for_an_admin(api_world, quiet_refusals):
    response = api_world.client("readonly").post("/api/v1/pipelines/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_insufficient"


def test_objects_of_another_team_are_not_found_rather_than_forbidden(api_world):
    maker2 = api_world.client("maker2")
    promotion = api_world.ids["promotion"]
    body = maker2.get(f"/api/v1/promotions/{promotion}/").json()
    assert body["error"]["code"] == "not_found"
    assert maker2.get("/api/v1/promotions/").json()["count"] == 0
    assert maker2.get("/api/v1/pipelines/").json()["count"] == 0
