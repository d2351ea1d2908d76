"""The authorization matrix (issue 6): every /api/v1/ operation, enumerated from the URL resolver, against
every persona, with the status each must get.

Requests carry an empty JSON body: a persona that is allowed through authentication, scopes and
visibility reaches validation (400) or the workflow's own refusal, so the matrix shows exactly where
each persona stops. Each request runs in a savepoint that is rolled back, so no row changes between
cells. A URL the resolver has but the matrix lacks (or the other way round) fails the test: a new
endpoint cannot ship without saying who may call it.

Columns: anonymous, maker (contoso), maker2 (fabrikam, another team), approver (contoso, named on the
stages), admin, auditor, readonly (an admin's token with only the `read` scope).

Token scopes: REQUIRED_SCOPE names the scope each operation needs (GETs need `read` unless listed; every
other method must be listed). A token holding one scope alone is then tried on every operation: with the
needed scope it gets exactly what its owner's full token gets in MATRIX, without it 403.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.api.matrix_support import api_endpoints, call, concrete
from tests.support.api import PERSONAS

pytestmark = pytest.mark.django_db

MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    ("DELETE", "/api/v1/pipelines/{pk}/"): (401, 403, 403, 403, 409, 403, 403),
    ("DELETE", "/api/v1/pipelines/{pk}/source/"): (401, 403, 403, 403, 204, 403, 403),
    ("DELETE", "/api/v1/solutions/{pk}/source/"): (401, 204, 404, 204, 204, 403, 403),
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
    ("GET", "/api/v1/pipelines/{pk}/source/"): (401, 404, 404, 404, 404, 404, 404),
    ("GET", "/api/v1/promotions/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/promotions/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/promotions/{pk}/rollback-plan/"): (401, 200, 404, 200, 200, 200, 200),
    # The promotion's version is in no repository in this world: 200 with a message saying so.
    ("GET", "/api/v1/promotions/{pk}/source-diff/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/solutions/"): (401, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/solutions/{pk}/"): (401, 200, 404, 200, 200, 200, 200),
    ("GET", "/api/v1/solutions/{pk}/versions/"): (401, 200, 404, 200, 200, 200, 200),
    # Not bound to a repository in this world: 404 for everyone who may see the solution.
    ("GET", "/api/v1/solutions/{pk}/source/"): (401, 404, 404, 404, 404, 404, 404),
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
    ("POST", "/api/v1/solutions/{pk}/source/builds/"): (401, 400, 404, 400, 400, 403, 403),
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
    ("PUT", "/api/v1/pipelines/{pk}/source/"): (401, 403, 403, 403, 400, 403, 403),
    ("PUT", "/api/v1/solutions/{pk}/source/"): (401, 400, 404, 400, 400, 403, 403),
    ("PUT", "/api/v1/stages/{pk}/"): (401, 403, 403, 403, 400, 403, 403),
    ("PUT", "/api/v1/stages/{pk}/settings/"): (401, 403, 403, 403, 200, 403, 403),
    ("PUT", "/api/v1/webhooks/{pk}/"): (401, 403, 403, 403, 400, 403, 403),
}


# The scope each non-GET operation needs (docs/roles.md §4); a GET needs `read` unless listed here.
REQUIRED_SCOPE: dict[tuple[str, str], str] = {
    ("DELETE", "/api/v1/pipelines/{pk}/"): "admin",
    ("DELETE", "/api/v1/stages/{pk}/"): "admin",
    ("DELETE", "/api/v1/stages/{pk}/freezes/{freeze_id}/"): "admin",
    ("DELETE", "/api/v1/stages/{pk}/windows/{window_id}/"): "admin",
    ("DELETE", "/api/v1/webhooks/{pk}/"): "admin",
    ("PATCH", "/api/v1/environments/{pk}/"): "admin",
    ("PATCH", "/api/v1/pipelines/{pk}/"): "admin",
    ("PATCH", "/api/v1/stages/{pk}/"): "admin",
    ("PATCH", "/api/v1/stages/{pk}/freezes/{freeze_id}/"): "admin",
    ("PATCH", "/api/v1/stages/{pk}/windows/{window_id}/"): "admin",
    ("PATCH", "/api/v1/webhooks/{pk}/"): "admin",
    ("POST", "/api/v1/audit-events/verification/"): "read",  # auditors start verifications
    ("POST", "/api/v1/environments/"): "admin",
    ("POST", "/api/v1/environments/{pk}/check/"): "admin",
    ("POST", "/api/v1/environments/{pk}/sync/"): "admin",
    ("POST", "/api/v1/jobs/{pk}/resolve/"): "admin",
    ("POST", "/api/v1/pipelines/"): "admin",
    ("POST", "/api/v1/pipelines/{pk}/reorder/"): "admin",
    ("POST", "/api/v1/pipelines/{pk}/stages/"): "admin",
    ("POST", "/api/v1/promotions/"): "request",
    ("POST", "/api/v1/promotions/{pk}/approve/"): "approve",
    ("POST", "/api/v1/promotions/{pk}/cancel/"): "request",
    ("POST", "/api/v1/promotions/{pk}/reject/"): "approve",
    ("POST", "/api/v1/promotions/{pk}/retry/"): "request",
    ("POST", "/api/v1/promotions/{pk}/rollback/"): "request",
    ("POST", "/api/v1/solutions/"): "request",
    ("POST", "/api/v1/solutions/{pk}/export/"): "request",
    ("POST", "/api/v1/solutions/{pk}/source/builds/"): "request",
    ("PUT", "/api/v1/solutions/{pk}/source/"): "request",
    ("DELETE", "/api/v1/solutions/{pk}/source/"): "request",
    ("POST", "/api/v1/stages/{pk}/freezes/"): "admin",
    ("POST", "/api/v1/stages/{pk}/windows/"): "admin",
    ("POST", "/api/v1/tokens/"): "read",  # never beyond the caller's own token (test_tokens_cannot_mint_scopes)
    ("POST", "/api/v1/tokens/{pk}/revoke/"): "read",
    ("POST", "/api/v1/versions/"): "request",
    ("POST", "/api/v1/versions/upload/"): "request",
    ("POST", "/api/v1/webhooks/"): "admin",
    ("POST", "/api/v1/webhooks/{pk}/test/"): "admin",
    ("PUT", "/api/v1/environments/{pk}/"): "admin",
    ("PUT", "/api/v1/me/notifications/"): "read",
    ("PUT", "/api/v1/pipelines/{pk}/"): "admin",
    ("PUT", "/api/v1/pipelines/{pk}/source/"): "admin",
    ("DELETE", "/api/v1/pipelines/{pk}/source/"): "admin",
    ("PUT", "/api/v1/stages/{pk}/"): "admin",
    ("PUT", "/api/v1/stages/{pk}/settings/"): "admin",
    ("PUT", "/api/v1/webhooks/{pk}/"): "admin",
}
# Whose single-scope token tries each scope: a persona whose role holds it and whom the workflow lets act.
SCOPE_OWNERS = {"read": "admin", "request": "maker", "approve": "approver", "admin": "admin"}


def required_scope(method: str, path: str) -> str:
    return REQUIRED_SCOPE.get((method, path), "read")


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


def test_every_operation_that_changes_something_names_the_scope_it_needs():
    enumerated = set(api_endpoints())
    unsafe = {operation for operation in enumerated if operation[0] not in ("GET", "HEAD", "OPTIONS")}
    assert sorted(unsafe - set(REQUIRED_SCOPE)) == [], "operations without an entry in REQUIRED_SCOPE"
    assert sorted(set(REQUIRED_SCOPE) - enumerated) == [], "REQUIRED_SCOPE entries for operations that do not exist"
    assert set(REQUIRED_SCOPE.values()) <= set(SCOPE_OWNERS)


@pytest.mark.parametrize("scope", sorted(SCOPE_OWNERS))
def test_a_token_with_one_scope_alone_reaches_exactly_the_operations_of_that_scope(
    api_world, quiet_refusals, token_for, scope
):
    from rest_framework.test import APIClient

    from alm_portal.accounts.choices import ROLE_SCOPES

    owner = SCOPE_OWNERS[scope]
    column = PERSONAS.index(owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(api_world.users[owner], scopes=[scope])}")
    failures = []
    for (method, path), expected in sorted(MATRIX.items()):
        needed = required_scope(method, path)
        url = concrete(path, api_world.ids)
        with transaction.atomic():
            response = call(client, method, url)
            transaction.set_rollback(True)
        if needed == scope:
            if response.status_code != expected[column]:
                failures.append(f"{method} {url}: {response.status_code}, {owner}'s full token gets {expected[column]}")
            continue
        # Lacking the scope: refused before anything is looked up, and told why.
        code = "scope_insufficient" if needed in ROLE_SCOPES[api_world.users[owner].role] else "permission_denied"
        if response.status_code != 403 or response.json()["error"]["code"] != code:
            failures.append(f"{method} {url}: {response.status_code} {response.content[:80]!r}, expected 403 {code}")
    assert failures == [], f"{scope}-only token of {owner}"


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


def test_tokens_cannot_mint_scopes_their_own_token_lacks(api_world):
    response = api_world.client("readonly").post("/api/v1/tokens/", {"scopes": ["read", "admin"]}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "scope_not_allowed"
    assert response.json()["error"]["details"] == {"scopes": ["admin"]}
