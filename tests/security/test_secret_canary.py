"""Secret canary across the product: recognisable secrets go in once and never come out.

An environment's client secret, an API token, a webhook secret, and known values for the encryption key,
SECRET_KEY, the token pepper and the audit checkpoint key. Representative flows run with them (register an
environment and check it against the emulator, token authentication, a webhook delivery, validation errors
and crashes on pages and API, audit verification and export); then no captured log record (every logger at
DEBUG, SQL included), audit row, API response, error page or report, mail, broker message, webhook request,
stored artifact or database column may contain any of them. The encrypted and hashed columns hold neither
the plaintext nor the key, so the whole database is searched.

Each secret kind also has its own deeper canary next to its feature (tests/environments, tests/notifications).
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.views.debug import ExceptionReporter
from rest_framework.test import APIClient

from alm_portal.audit.models import AuditEvent
from alm_portal.dataverse.client import clear_throttle
from tests.notifications.conftest import receiver, receiver_certificates  # noqa: F401 - fixtures
from tests.support.database import columns_containing

pytestmark = pytest.mark.django_db

CLIENT_SECRET = "CanaryClientSecret~3c1d-NeverShown-88e0"
WEBHOOK_SECRET = "CanaryWebhookSecret~51aa-NeverShown-0f3b"
SECRET_KEY = "CanaryDjangoSecretKey~b7e2-NeverShown-4c19-padding-to-fifty-chars"
TOKEN_PEPPER = "CanaryTokenPepper~a0c4-NeverShown-e6d8"
CHECKPOINT_KEY = "CanaryCheckpointKey~7d93-NeverShown-21bf"
FERNET_RAW = b"CanaryFernetKey~NeverShown-12345"  # 32 bytes
FERNET_KEY = base64.urlsafe_b64encode(FERNET_RAW).decode()


@pytest.fixture
def canary_settings(settings: Any, emulator: Any, receiver: Any, artifact_storage: Path) -> Any:  # noqa: F811
    settings.SECRET_KEY = SECRET_KEY
    settings.ALM_ENCRYPTION_KEYS = [FERNET_KEY]
    settings.ALM_TOKEN_PEPPER = TOKEN_PEPPER
    settings.ALM_AUDIT_CHECKPOINT_KEY = CHECKPOINT_KEY
    settings.ROOT_URLCONF = "tests.security.urls"
    settings.ALM_ALLOW_LOOPBACK = True
    settings.ALM_DATAVERSE_CA_BUNDLE = str(emulator.ca_file)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    clear_throttle()
    yield settings
    clear_throttle()


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> Any:
    """Every logger at DEBUG, and SQL statements with their parameters logged too."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False


def test_no_secret_leaks_from_any_flow(
    canary_settings: Any,
    everything_logged: pytest.LogCaptureFixture,
    emulator: Any,
    emulator_org: Any,
    receiver: Any,  # noqa: F811
    make_user: Any,
    team: Any,
    token_for: Any,
    artifact_storage: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alm_portal.crypto import decrypt_secret
    from alm_portal.jobs.models import Job
    from alm_portal.jobs.services import job_run_now
    from alm_portal.notifications import services as notifications
    from alm_portal.notifications.models import WebhookDelivery
    from alm_portal.notifications.signing import verify_signature
    from environments.models import Credential

    caplog = everything_logged
    published: list[Any] = []
    monkeypatch.setattr(
        "alm_portal.celery.publish_best_effort",
        lambda task, args=(), countdown=None: published.append((task.name, args)) or True,
    )
    emulator.register_client(
        [emulator_org.name], tenant_id=emulator_org.tenant_id, client_id=emulator_org.client_id,
        client_secret=CLIENT_SECRET,
    )  # fmt: skip
    admin = make_user("admin", "admin")
    maker = make_user("maker", "maker", team)
    auditor = make_user("auditor", "auditor")
    admin_api = APIClient(raise_request_exception=False)
    admin_api.credentials(
        HTTP_AUTHORIZATION=f"Bearer {token_for(admin, scopes=['read', 'request', 'approve', 'admin'])}"
    )
    auditor_api = APIClient()
    auditor_api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(auditor, scopes=['read'])}")
    bodies: list[str] = []

    def keep(response: Any) -> Any:
        content = b"".join(response.streaming_content) if response.streaming else response.content
        bodies.append(content.decode("utf-8", "replace"))
        return response

    # --- an API token: shown once when created, then only ever sent back by its owner -----------------
    maker_session_api = APIClient()
    maker_session_api.force_authenticate(user=maker)
    created = maker_session_api.post("/api/v1/tokens/", {"name": "ci", "scopes": ["read", "request"]}, format="json")
    assert created.status_code == 201
    api_token = created.json()["token"]
    assert created.content.decode().count(api_token) == 1
    maker_api = APIClient()
    maker_api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert keep(maker_api.get("/api/v1/me/")).json()["username"] == "maker"
    keep(maker_api.get("/api/v1/tokens/"))
    keep(maker_api.get("/api/v1/environments/", {"token": api_token}))  # a token in the query string is no credential
    # ...and refused when spelled almost right, with nothing of it echoed.
    near_miss = APIClient()
    near_miss.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token}x")
    assert keep(near_miss.get("/api/v1/me/")).status_code == 401

    # --- an environment with a client secret: register, check against the emulator -------------------
    registration = {
        "name": "canary-env",
        "url": emulator_org.url,
        "kind": "test",
        "tenant_id": emulator_org.tenant_id,
        "authority": emulator_org.authority,
        "team": team.pk,
        "client_id": emulator_org.client_id,
        "credential_type": "secret",
        "client_secret": CLIENT_SECRET,
    }
    registered = keep(admin_api.post("/api/v1/environments/", registration, format="json"))
    assert registered.status_code == 201, registered.content
    environment_id = registered.json()["id"]
    assert job_run_now(Job.objects.get(environment_id=environment_id)).result["status"] == "healthy"
    assert keep(admin_api.post(f"/api/v1/environments/{environment_id}/check/")).status_code == 202
    assert job_run_now(Job.objects.filter(kind="health_check").latest("pk")).result["status"] == "healthy"
    keep(admin_api.get(f"/api/v1/environments/{environment_id}/"))
    keep(maker_api.get(f"/api/v1/environments/{environment_id}/"))

    # --- a webhook with a secret: created, pinged, delivered signed ------------------------------------
    hook = {"name": "canary-hook", "url": receiver.url, "events": ["environment."], "secret": WEBHOOK_SECRET}
    webhook = keep(admin_api.post("/api/v1/webhooks/", hook, format="json"))
    assert webhook.status_code == 201, webhook.content
    ping = keep(admin_api.post(f"/api/v1/webhooks/{webhook.json()['id']}/test/")).json()["delivery"]
    assert notifications.webhook_delivery_attempt(delivery_id=ping["id"]).status == "delivered"
    delivered = receiver.received[-1]
    assert verify_signature(secret=WEBHOOK_SECRET, header=delivered.headers["X-ALM-Signature"], body=delivered.body)
    notifications.notifications_dispatch()
    for pending in WebhookDelivery.objects.filter(status="pending"):
        notifications.webhook_delivery_attempt(delivery_id=pending.pk)
    keep(admin_api.get(f"/api/v1/webhooks/{webhook.json()['id']}/deliveries/"))

    # --- validation errors with the secrets in the request, on the API and the pages -------------------
    bad_url = {**registration, "name": "refused", "url": "http://169.254.169.254/"}
    assert keep(admin_api.post("/api/v1/environments/", bad_url, format="json")).status_code == 400
    bad_hook = {**hook, "name": "refused", "url": "http://10.0.0.1/x"}
    assert keep(admin_api.post("/api/v1/webhooks/", bad_hook, format="json")).status_code == 400
    page = Client(raise_request_exception=False)
    page.force_login(admin)
    page_form = {**registration, "name": "page-env", "url": "https://x.crm.dynamics.com@evil.example"}
    assert keep(page.post("/environments/new/", page_form)).status_code == 400
    keep(page.get(f"/environments/{environment_id}/"))
    keep(page.get("/"))

    # --- crashes while secrets are in the request: the 500 page, the API's 500, Django's error report ---
    assert keep(page.post("/security-probe/fail/", {"client_secret": CLIENT_SECRET})).status_code == 500
    crash_api = admin_api.post("/api/v1/security-probe/fail/", {"secret": WEBHOOK_SECRET}, format="json")
    assert keep(crash_api).status_code == 500
    crashes = [r for r in caplog.records if r.name == "django.request" and r.exc_info and hasattr(r, "request")]
    assert len(crashes) == 2
    for crash in crashes:
        reporter = ExceptionReporter(crash.request, *crash.exc_info, is_email=True)
        bodies += [reporter.get_traceback_text(), reporter.get_traceback_html()]

    # --- audit: verification (signs a checkpoint with its key), reads and exports ----------------------
    verification = keep(auditor_api.post("/api/v1/audit-events/verification/"))
    assert verification.status_code == 202
    assert job_run_now(Job.objects.get(pk=verification.json()["job"]["id"])).status == "succeeded"
    assert AuditEvent.objects.filter(action="audit.verified").exists()
    keep(auditor_api.get("/api/v1/audit-events/"))
    keep(auditor_api.get("/api/v1/audit-events/export/", {"file_format": "csv"}))
    keep(auditor_api.get("/api/v1/audit-events/export/", {"file_format": "jsonl"}))
    keep(auditor_api.get("/api/v1/audit-events/verification/"))
    auditor_page = Client()
    auditor_page.force_login(auditor)
    keep(auditor_page.get("/audit/"))

    # --- the secrets went in: the stored ones decrypt, with the known key ------------------------------
    stored = Credential.objects.get(environment_id=environment_id)
    assert decrypt_secret(stored.secret_ciphertext) == CLIENT_SECRET
    checkpoints = [path for path in artifact_storage.rglob("*") if path.is_file()]
    assert checkpoints, "the verification wrote no checkpoint"

    # --- ...and never came out -----------------------------------------------------------------------
    canaries = {
        "client secret": CLIENT_SECRET,
        "API token": api_token,
        "webhook secret": WEBHOOK_SECRET,
        "SECRET_KEY": SECRET_KEY,
        "token pepper": TOKEN_PEPPER,
        "checkpoint key": CHECKPOINT_KEY,
        "encryption key": FERNET_KEY,
        "encryption key bytes": FERNET_RAW.decode(),
    }
    # Every record as written and with all its attributes, except `request`: that is the incoming request
    # itself (a token a client put in its URL is in there); what a handler renders of it is checked as
    # the error reports above.
    records = [record for record in caplog.records]
    logged = caplog.text + "".join(
        str({key: value for key, value in record.__dict__.items() if key != "request"}) for record in records
    )
    assert "INSERT INTO" in logged  # SQL was logged with its parameters, so the search covers it
    audit_rows = [
        json.dumps({field.name: getattr(event, field.attname) for field in event._meta.fields}, default=str)
        for event in AuditEvent.objects.all()
    ]
    outside = {
        "log records": [logged],
        "audit rows": audit_rows,
        "responses and error reports": bodies,
        "mails": [str(message.message()) for message in mail.outbox],
        "broker messages": [repr(message) for message in published],
        "webhook requests": [repr((request.headers, request.body)) for request in receiver.received],
        "stored artifacts": [path.read_bytes().decode("utf-8", "replace") for path in checkpoints],
    }
    leaks = [
        f"{name} in {where}"
        for name, canary in canaries.items()
        for where, texts in outside.items()
        if any(canary in text for text in texts)
    ]
    leaks += [
        f"{name} in column {column}" for name, canary in canaries.items() for column in columns_containing(canary)
    ]
    assert leaks == []


def test_error_reports_hide_secret_looking_fields_of_any_view(rf: Any) -> None:
    """Django hides POST fields only for views marked @sensitive_post_parameters; ours hides any field
    named like a secret, wherever the crash happened, and leaves the others readable."""
    request = rf.post("/anywhere/", {"client_secret": CLIENT_SECRET, "api_token": "t0k3n", "name": "visible-name"})
    try:
        raise RuntimeError("crash")
    except RuntimeError as exc:
        report = ExceptionReporter(request, type(exc), exc, exc.__traceback__, is_email=True).get_traceback_text()

    assert CLIENT_SECRET not in report and "t0k3n" not in report
    assert "visible-name" in report
