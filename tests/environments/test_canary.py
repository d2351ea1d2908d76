"""A recognisable secret goes in once and must never come out: not in logs, audit rows, API
responses, error pages, job rows, notifications or any other database column."""

from __future__ import annotations

import json
import logging

import pytest
from django.views.debug import ExceptionReporter

from alm_portal.audit.models import AuditEvent
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from environments.models import Environment
from environments.services import registry
from tests.environments.conftest import CANARY_SECRET
from tests.support.database import columns_containing

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.environments.urls")]

SECOND_CANARY = "SecondCanary~44d1-NeverShown-b0c7"


def test_the_canary_secret_never_leaks(emulator, emulator_org, api_client, client, admin_user, team, caplog):
    caplog.set_level(logging.DEBUG)
    # The emulator's app registration for this org now has the canary as its secret.
    emulator.register_client(
        [emulator_org.name],
        tenant_id=emulator_org.tenant_id,
        client_id=emulator_org.client_id,
        client_secret=CANARY_SECRET,
    )
    api_client.force_authenticate(user=admin_user)
    bodies: list[str] = []

    def keep(response):
        bodies.append(response.content.decode("utf-8", "replace"))
        return response

    # Register through the API (the first health check is queued) and run the check: healthy.
    body = {
        "name": "canary-env",
        "url": emulator_org.url,
        "kind": "test",
        "tenant_id": emulator_org.tenant_id,
        "authority": emulator_org.authority,
        "team": team.pk,
        "client_id": emulator_org.client_id,
        "credential_type": "secret",
        "client_secret": CANARY_SECRET,
    }
    created = keep(api_client.post("/api/v1/environments/", body, format="json"))
    assert created.status_code == 201
    environment = Environment.objects.get(pk=created.json()["id"])
    assert job_run_now(Job.objects.get(environment=environment)).result["status"] == "healthy"

    # Sync (success), then failures: server errors, a throttle, and a rotation to a wrong secret.
    assert keep(api_client.post(f"/api/v1/environments/{environment.pk}/sync/")).status_code == 202
    assert job_run_now(Job.objects.filter(kind="inventory_sync").latest("pk")).status == "succeeded"
    emulator_org.set_faults(server_errors={"status": 500, "count": 10})
    keep(api_client.post(f"/api/v1/environments/{environment.pk}/check/"))
    assert job_run_now(Job.objects.filter(kind="health_check").latest("pk")).result["status"] == "degraded"
    emulator_org.clear_faults()
    keep(api_client.patch(f"/api/v1/environments/{environment.pk}/", {"client_secret": SECOND_CANARY}, format="json"))
    rotation = job_run_now(Job.objects.filter(kind="health_check").latest("pk"))
    assert rotation.result["candidate_verified"] is False
    emulator_org.set_faults(server_errors={"status": 503, "count": 10})
    keep(api_client.post(f"/api/v1/environments/{environment.pk}/sync/"))
    assert job_run_now(Job.objects.filter(kind="inventory_sync").latest("pk")).status == "failed"
    emulator_org.clear_faults()

    # A second environment whose secret (the canary) is wrong there: unauthorized.
    other = emulator.new_org()
    wrong = {**body, "name": "canary-wrong", "url": other.url, "tenant_id": other.tenant_id}
    wrong["authority"], wrong["client_id"] = other.authority, other.client_id
    wrong_env = keep(api_client.post("/api/v1/environments/", wrong, format="json")).json()
    assert job_run_now(Job.objects.get(environment_id=wrong_env["id"])).result["status"] == "unauthorized"

    # Every read the API offers.
    for suffix in ("", "inventory/", "drift/", "solution-history/"):
        keep(api_client.get(f"/api/v1/environments/{environment.pk}/{suffix}"))
    keep(api_client.get("/api/v1/environments/"))

    # A refused registration (400) through the API and through the page.
    refused = keep(api_client.post("/api/v1/environments/", {**body, "url": "http://169.254.169.254/"}, format="json"))
    assert refused.status_code == 400
    client.force_login(admin_user)
    page_body = {**body, "name": "page-env", "url": "https://x.crm.dynamics.com@evil.com", "is_active": "on"}
    assert keep(client.post("/environments/new/", page_body)).status_code == 400
    keep(client.get(f"/environments/{environment.pk}/"))

    # A crash deep inside the service while the secret is in the request: the 500 page, and the
    # error report Django would mail to ADMINS (POST data and every frame's local variables).
    def explode(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(registry, "credential_insert", explode)
    reports: list[str] = []
    try:
        client.raise_request_exception = False
        api_client.raise_request_exception = False
        crash_form = {**page_body, "url": emulator_org.url, "name": "boom"}
        assert keep(client.post("/environments/new/", crash_form)).status_code == 500
        crashed_api = api_client.post("/api/v1/environments/", {**body, "name": "boom"}, format="json")
        assert keep(crashed_api).status_code == 500
        crashes = [r for r in caplog.records if r.name == "django.request" and r.exc_info and hasattr(r, "request")]
        assert len(crashes) == 2
        for record in crashes:
            reporter = ExceptionReporter(record.request, *record.exc_info, is_email=True)
            text, html = reporter.get_traceback_text(), reporter.get_traceback_html()
            assert "database went away" in text
            reports += [text, html]
    finally:
        monkeypatch.undo()
    bodies.extend(reports)

    for canary in (CANARY_SECRET, SECOND_CANARY):
        leaks = [index for index, text in enumerate(bodies) if canary in text]
        assert leaks == [], f"responses {leaks} contain the secret"
        logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
        assert canary not in logged, "a log record contains the secret"
        for event in AuditEvent.objects.all():
            row = json.dumps({field.name: getattr(event, field.attname) for field in event._meta.fields}, default=str)
            assert canary not in row, f"audit event {event.seq} ({event.action}) contains the secret"
        assert columns_containing(canary) == []
    assert AuditEvent.objects.filter(action="credential.verification_failed").exists()
    assert AuditEvent.objects.filter(action="environment.health_changed").count() >= 3
