"""The webhooks API and the caller's email opt-in: admins write, admins and auditors read, everyone
else is refused; the secret goes in and never comes out."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alm_portal.audit.models import AuditEvent
from alm_portal.notifications import services
from alm_portal.notifications.models import WebhookDelivery, WebhookEndpoint
from tests.notifications.conftest import emit

pytestmark = pytest.mark.django_db

SECRET = "api-secret-9b7e4c2a-never-shown"
BODY = {
    "name": "ci",
    "url": "https://hooks.example.com/alm",
    "events": ["promotion.", "drift.detected"],
    "secret": SECRET,
}


@pytest.fixture
def endpoint(admin_context):
    return services.webhook_endpoint_create(
        name="existing",
        url="https://hooks.example.com/existing",
        events=["drift."],
        secret=SECRET,
        context=admin_context,
    )


def _as(api_client, user):
    api_client.force_authenticate(user=user)
    return api_client


def _with_token(api_client, token):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


# --- what admins do ------------------------------------------------------------------------------------


def test_an_admin_creates_reads_changes_and_deletes_a_webhook(api_client, admin_user, team):
    client = _as(api_client, admin_user)
    created = client.post("/api/v1/webhooks/", {**BODY, "team": team.pk}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert created["Location"] == f"/api/v1/webhooks/{body['id']}/"
    assert body["name"] == "ci" and body["url"] == BODY["url"] and body["team"] == {"id": team.pk, "name": "Contoso"}
    assert body["events"] == ["drift.detected", "promotion."] and body["is_active"] is True
    assert body["created_by"] == {"id": admin_user.pk, "username": "admin", "display_name": "admin"}
    assert "secret" not in body and "secret_ciphertext" not in body

    pk = body["id"]
    assert client.get(f"/api/v1/webhooks/{pk}/").json()["name"] == "ci"
    assert client.get("/api/v1/webhooks/").json()["count"] == 1

    patched = client.patch(f"/api/v1/webhooks/{pk}/", {"events": ["job.failed"], "is_active": False}, format="json")
    assert patched.status_code == 200 and patched.json()["events"] == ["job.failed"]
    assert patched.json()["is_active"] is False

    # PUT without a secret keeps the stored one (it is never shown, so it cannot be sent back).
    put = client.put(f"/api/v1/webhooks/{pk}/", {**BODY, "name": "ci-2", "secret": ""}, format="json")
    assert put.status_code == 400  # an empty secret is not "no secret"
    kept = {key: value for key, value in BODY.items() if key != "secret"}
    put = client.put(f"/api/v1/webhooks/{pk}/", {**kept, "name": "ci-2"}, format="json")
    assert put.status_code == 200 and put.json()["name"] == "ci-2"
    from alm_portal.crypto import decrypt_secret

    assert decrypt_secret(WebhookEndpoint.objects.get(pk=pk).secret_ciphertext) == SECRET

    assert client.delete(f"/api/v1/webhooks/{pk}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    actions = list(
        AuditEvent.objects.filter(action__startswith="webhook.").order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["webhook.created", "webhook.updated", "webhook.updated", "webhook.deleted"]


def test_a_refused_url_is_a_400_with_the_policys_message(api_client, admin_user):
    for url, message in [
        ("https://169.254.169.254/latest/meta-data", "IP addresses are not allowed; use the service's DNS name."),
        ("https://10.1.2.3/hook", "IP addresses are not allowed; use the service's DNS name."),
        ("http://hooks.example.com/alm", "Only https URLs are allowed."),
    ]:
        response = _as(api_client, admin_user).post("/api/v1/webhooks/", {**BODY, "url": url}, format="json")
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "validation_error" and error["message"] == message
        assert error["details"]["url"] == [message]


def test_a_secret_is_required_to_create(api_client, admin_user):
    body = {key: value for key, value in BODY.items() if key != "secret"}
    response = _as(api_client, admin_user).post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 400 and "secret" in response.json()["error"]["details"]


def test_the_delivery_log_and_its_filter(api_client, admin_user, endpoint, environment):
    emit("drift.detected", target=environment)
    emit("drift.resolved", target=environment)
    services.notifications_dispatch()
    WebhookDelivery.objects.filter(event="drift.resolved").update(status="failed", last_error="HTTP 500.")
    client = _as(api_client, admin_user)

    everything = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/").json()
    assert everything["count"] == 2
    assert [row["event"] for row in everything["results"]] == ["drift.resolved", "drift.detected"]
    row = everything["results"][1]
    assert set(row) == {
        "id", "event", "audit_seq", "status", "attempts", "next_attempt_at", "last_status_code", "last_error",
        "delivered_at", "created_at", "payload",
    }  # fmt: skip
    assert row["payload"]["event"] == "drift.detected"
    failed = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/?status=failed").json()
    assert [row["last_error"] for row in failed["results"]] == ["HTTP 500."]
    bad = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/?status=lost")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"


def test_the_test_action_queues_a_ping(api_client, admin_user, endpoint, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _as(api_client, admin_user).post(f"/api/v1/webhooks/{endpoint.pk}/test/")
    assert response.status_code == 202
    delivery = response.json()["delivery"]
    assert delivery["event"] == "webhook.test" and delivery["status"] == "pending"
    assert response["Location"] == f"/api/v1/webhooks/{endpoint.pk}/deliveries/"
    assert ("notifications.deliver_webhook", (delivery["id"],)) in published
    assert AuditEvent.objects.filter(action="webhook.tested", object_id=str(endpoint.pk)).count() == 1


def test_unknown_ids_are_404(api_client, admin_user):
    client = _as(api_client, admin_user)
    for method, path in [("get", "/api/v1/webhooks/999/"), ("post", "/api/v1/webhooks/999/test/")]:
        response = getattr(client, method)(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_list_costs_the_same_queries_for_one_webhook_or_many(api_client, admin_user, admin_context, team):
    client = _as(api_client, admin_user)
    services.webhook_endpoint_create(
        name="hook-0",
        url="https://hooks.example.com/0",
        events=["drift."],
        secret=SECRET,
        team=team,
        context=admin_context,
    )
    with CaptureQueriesContext(connection) as one:
        assert client.get("/api/v1/webhooks/").json()["count"] == 1
    for n in range(1, 6):
        services.webhook_endpoint_create(
            name=f"hook-{n}", url=f"https://hooks.example.com/{n}", events=["drift."], secret=SECRET, team=team,
            context=admin_context,
        )  # fmt: skip
    with CaptureQueriesContext(connection) as many:
        assert client.get("/api/v1/webhooks/").json()["count"] == 6
    assert len(many.captured_queries) == len(one.captured_queries)


# --- without permission ----------------------------------------------------------------------------------


def _routes(pk):
    return [
        ("get", "/api/v1/webhooks/", None),
        ("post", "/api/v1/webhooks/", BODY),
        ("get", f"/api/v1/webhooks/{pk}/", None),
        ("put", f"/api/v1/webhooks/{pk}/", BODY),
        ("patch", f"/api/v1/webhooks/{pk}/", {"name": "x"}),
        ("delete", f"/api/v1/webhooks/{pk}/", None),
        ("get", f"/api/v1/webhooks/{pk}/deliveries/", None),
        ("post", f"/api/v1/webhooks/{pk}/test/", None),
    ]


def _call(client, method, path, body):
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


def test_anonymous_callers_get_401_everywhere(api_client, endpoint):
    for method, path, body in [*_routes(endpoint.pk), ("get", "/api/v1/me/notifications/", None)]:
        response = _call(api_client, method, path, body)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert _call(api_client, "put", "/api/v1/me/notifications/", {"events": ["drift."]}).status_code == 401


@pytest.mark.parametrize("persona", ["maker", "approver", "outsider"])
def test_makers_and_approvers_are_refused_every_webhook_endpoint(api_client, endpoint, persona, request):
    client = _as(api_client, request.getfixturevalue(persona))
    for method, path, body in _routes(endpoint.pk):
        response = _call(client, method, path, body)
        assert response.status_code == 403, (persona, method, path, response.content)
        assert response.json()["error"]["code"] == "permission_denied"
    endpoint.refresh_from_db()
    assert endpoint.name == "existing" and WebhookEndpoint.objects.count() == 1
    assert not WebhookDelivery.objects.exists()


def test_auditors_read_webhooks_but_change_nothing(api_client, auditor, endpoint):
    client = _as(api_client, auditor)
    for method, path, body in _routes(endpoint.pk):
        response = _call(client, method, path, body)
        expected = 200 if method == "get" else 403
        assert response.status_code == expected, (method, path, response.content)
    assert WebhookEndpoint.objects.get().name == "existing" and not WebhookDelivery.objects.exists()


def test_an_admins_read_only_token_may_read_but_not_write(api_client, admin_user, endpoint, token_for):
    client = _with_token(api_client, token_for(admin_user, ["read"]))
    for method, path, body in _routes(endpoint.pk):
        response = _call(client, method, path, body)
        if method == "get":
            assert response.status_code == 200, (method, path)
        else:
            assert response.status_code == 403, (method, path)
            assert response.json()["error"]["code"] == "scope_insufficient"
    admin_token = _with_token(api_client, token_for(admin_user, ["read", "admin"], name="admin-token"))
    assert admin_token.post("/api/v1/webhooks/", BODY, format="json").status_code == 201


def test_refusals_are_audited_as_denied(api_client, maker, endpoint):
    _as(api_client, maker).delete(f"/api/v1/webhooks/{endpoint.pk}/")
    denied = AuditEvent.objects.get(action="api.denied")
    assert denied.outcome == "denied" and denied.after["path"] == f"/api/v1/webhooks/{endpoint.pk}/"


# --- the caller's email opt-in ------------------------------------------------------------------------


def test_anyone_signed_in_manages_their_own_email_opt_in(api_client, maker, auditor):
    maker.email = "maker@example.com"
    maker.save(update_fields=["email"])
    client = _as(api_client, maker)
    assert client.get("/api/v1/me/notifications/").json() == {
        "events": [],
        "is_active": False,
        "email": "maker@example.com",
        "updated_at": None,
    }
    response = client.put("/api/v1/me/notifications/", {"events": ["promotion.requested", "drift."]}, format="json")
    assert response.status_code == 200
    assert response.json()["events"] == ["drift.", "promotion.requested"] and response.json()["is_active"] is True
    bad = client.put("/api/v1/me/notifications/", {"events": ["promotion.*"]}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["details"] == {
        "events": ["Not an event code or prefix: 'promotion.*'."]
    }
    # Auditors change nothing in the portal, but their own mail is theirs.
    auditor.email = "auditor@example.com"
    auditor.save(update_fields=["email"])
    assert (
        _as(api_client, auditor).put("/api/v1/me/notifications/", {"events": ["job."]}, format="json").status_code
        == 200
    )
    changed = AuditEvent.objects.filter(action="email_subscription.changed")
    assert sorted(changed.values_list("related_id", flat=True)) == sorted([str(maker.pk), str(auditor.pk)])


def test_opting_in_without_an_address_is_a_400(api_client, maker):
    response = _as(api_client, maker).put("/api/v1/me/notifications/", {"events": ["drift."]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Your account has no email address to send notifications to."
