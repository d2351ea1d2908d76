"""Credentials: encrypted at rest, rotated by add → verify → activate, all audited; and the
registration/update services' validation and audit rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.core.management import call_command
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.crypto import decrypt_secret
from alm_portal.errors import InvalidState, ValidationFailed
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from environments import services
from environments.choices import CredentialStatus, HealthStatus
from environments.models import Credential, Environment
from tests.environments.conftest import CANARY_SECRET, events, only_event

pytestmark = pytest.mark.django_db


def _self_signed(days: int = 200) -> tuple[str, str, datetime]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alm-portal-test")])
    not_after = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem, not_after


# --- at rest ----------------------------------------------------------------------------------------------


def test_the_secret_is_stored_only_encrypted(emulator_org, register):
    environment = register(emulator_org, client_secret=CANARY_SECRET)
    credential = Credential.objects.get(environment=environment)
    assert CANARY_SECRET not in credential.secret_ciphertext
    assert decrypt_secret(credential.secret_ciphertext) == CANARY_SECRET
    assert not Credential.objects.filter(secret_ciphertext__contains=CANARY_SECRET).exists()


def test_key_rotation_reencrypts_every_secret_with_the_newest_key(emulator_org, register, settings, capsys):
    environment = register(emulator_org, client_secret=CANARY_SECRET)
    old_cipher = Credential.objects.get(environment=environment).secret_ciphertext
    new_key = Fernet.generate_key().decode()
    settings.ALM_ENCRYPTION_KEYS = [new_key, *settings.ALM_ENCRYPTION_KEYS]
    call_command("rotate_encryption_key")
    assert "reencrypted=1" in capsys.readouterr().out
    new_cipher = Credential.objects.get(environment=environment).secret_ciphertext
    assert new_cipher != old_cipher
    settings.ALM_ENCRYPTION_KEYS = [new_key]  # the old key can go now
    assert decrypt_secret(new_cipher) == CANARY_SECRET
    assert only_event("credential.keys_rotated").after == {"reencrypted": 1}
    # Running it again changes nothing.
    assert services.credentials_reencrypt(context=AuditContext.system()) == 0


# --- rotation ----------------------------------------------------------------------------------------------


def test_rotation_verifies_the_new_credential_then_activates_it_and_retires_the_old(
    emulator, emulator_org, register, admin_context
):
    environment = register(emulator_org)
    old = Credential.objects.get(environment=environment)
    rotated = emulator.register_client([emulator_org.name], tenant_id=emulator_org.tenant_id)

    new, job = services.credential_rotate(
        environment=environment,
        client_id=rotated["client_id"],
        kind="secret",
        client_secret=rotated["client_secret"],
        expires_at=timezone.now() + timedelta(days=180),
        context=admin_context,
    )
    assert new.status == CredentialStatus.PENDING_VERIFICATION
    assert job.kind == JobKind.HEALTH_CHECK and job.params == {"credential_id": new.pk}

    job = job_run_now(job)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["candidate_verified"] is True
    assert job.result["status"] == HealthStatus.HEALTHY
    new.refresh_from_db()
    old.refresh_from_db()
    assert (new.status, old.status) == (CredentialStatus.ACTIVE, CredentialStatus.RETIRED)
    assert new.verified_at is not None and new.activated_at is not None and old.retired_at is not None

    added = events("credential.added", object_id=str(new.pk))
    assert added[0].after["status"] == "pending_verification"
    assert added[0].after["client_id"] == rotated["client_id"]
    assert only_event("credential.verified", object_id=str(new.pk)).related_id == str(environment.pk)
    retired = only_event("credential.retired", object_id=str(old.pk))
    assert (retired.before, retired.after) == ({"status": "active"}, {"status": "retired", "replaced_by": new.pk})
    activated = only_event("credential.activated", object_id=str(new.pk))
    assert activated.before == {"status": "pending_verification"}
    assert activated.after == {"status": "active", "replaces": [old.pk]}
    order = [e.action for e in events() if e.action.startswith("credential.")]
    assert order[-4:] == ["credential.added", "credential.verified", "credential.retired", "credential.activated"]


def test_a_new_credential_that_does_not_work_stays_pending_and_the_old_one_keeps_working(
    emulator_org, register, admin_context
):
    environment = register(emulator_org)
    old = Credential.objects.get(environment=environment)
    new, job = services.credential_rotate(
        environment=environment,
        client_id=emulator_org.client_id,
        kind="secret",
        client_secret="this-is-the-wrong-secret",
        context=admin_context,
    )
    job = job_run_now(job)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["candidate_verified"] is False
    assert job.result["status"] == HealthStatus.HEALTHY
    new.refresh_from_db()
    old.refresh_from_db()
    assert (new.status, old.status) == (CredentialStatus.PENDING_VERIFICATION, CredentialStatus.ACTIVE)
    assert "AADSTS" in new.last_error
    assert "this-is-the-wrong-secret" not in new.last_error
    failed = only_event("credential.verification_failed", object_id=str(new.pk))
    assert failed.outcome == "failed"
    assert failed.after["error_code"].startswith("AADSTS")
    assert events("credential.activated") == []

    services.credential_discard(credential=new, context=admin_context)
    new.refresh_from_db()
    assert new.status == CredentialStatus.RETIRED
    discarded = events("credential.retired", object_id=str(new.pk))
    assert discarded[0].before == {"status": "pending_verification"}


def test_an_unverified_credential_cannot_be_activated(emulator_org, register, admin_context):
    environment = register(emulator_org)
    pending = services.credential_add(
        environment=environment,
        client_id=emulator_org.client_id,
        kind="secret",
        client_secret="another-secret-value",
        context=admin_context,
    )
    with pytest.raises(InvalidState):
        services.credential_activate(credential=pending, context=admin_context)
    active = Credential.objects.get(environment=environment, status=CredentialStatus.ACTIVE)
    with pytest.raises(InvalidState):
        services.credential_activate(credential=active, context=admin_context)
    with pytest.raises(InvalidState):
        services.credential_discard(credential=active, context=admin_context)


def test_changing_the_recorded_expiry_is_audited_and_rearms_the_warnings(emulator_org, register, admin_context):
    environment = register(emulator_org)
    credential = Credential.objects.get(environment=environment)
    Credential.objects.filter(pk=credential.pk).update(expiry_warned_days=7)
    credential.refresh_from_db()
    when = timezone.now().replace(microsecond=0) + timedelta(days=90)
    services.credential_set_expiry(credential=credential, expires_at=when, context=admin_context)
    credential.refresh_from_db()
    assert (credential.expires_at, credential.expiry_warned_days) == (when, None)
    event = only_event("credential.expiry_changed", object_id=str(credential.pk))
    assert event.before == {"expires_at": None}
    assert event.after == {"expires_at": when.isoformat().replace("+00:00", "Z")}


# --- certificates ------------------------------------------------------------------------------------------


def test_a_certificate_credential_keeps_its_thumbprint_and_expiry_and_encrypts_the_key(
    emulator_org, register, admin_context
):
    certificate_pem, key_pem, not_after = _self_signed()
    environment = register(
        emulator_org,
        name="cert-env",
        credential_type="certificate",
        client_secret=None,
        certificate_pem=certificate_pem,
        private_key_pem=key_pem,
    )
    credential = Credential.objects.get(environment=environment)
    assert credential.kind == "certificate"
    assert credential.expires_at == not_after
    assert len(credential.certificate_thumbprint) == 64
    assert "PRIVATE KEY" not in credential.secret_ciphertext
    assert decrypt_secret(credential.secret_ciphertext) == key_pem
    added = only_event("credential.added", object_id=str(credential.pk))
    assert added.after["thumbprint"] == credential.certificate_thumbprint
    assert "PRIVATE" not in str(added.after) and "CERTIFICATE" not in str(added.after)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {
                "credential_type": "certificate",
                "client_secret": None,
                "certificate_pem": "nope",
                "private_key_pem": "x",
            },
            "certificate_pem",
        ),
        ({"credential_type": "secret", "client_secret": ""}, "client_secret"),
        ({"credential_type": "secret", "certificate_pem": "-----BEGIN CERTIFICATE-----"}, "certificate_pem"),
        ({"credential_type": "password"}, "credential_type"),
        ({"client_id": ""}, "client_id"),
        ({"url": "https://contoso.crm.dynamics.com@evil.com"}, "url"),
        ({"authority": "https://evil.example.com/tenant"}, "authority"),
        ({"tenant_id": "common"}, "tenant_id"),
        ({"kind": "staging"}, "kind"),
        ({"name": ""}, "name"),
        ({"credential_expires_at": datetime(2030, 1, 1)}, "credential_expires_at"),
    ],
)
def test_registration_refuses_bad_input_per_field(emulator_org, register, overrides, field):
    with pytest.raises(ValidationFailed) as refused:
        register(emulator_org, **overrides)
    assert field in refused.value.details
    assert not Environment.objects.exists()
    assert events("environment.created") == []


def test_names_are_unique_whatever_the_case(emulator_org, register):
    register(emulator_org, name="Contoso-Test")
    with pytest.raises(ValidationFailed) as refused:
        register(emulator_org, name="contoso-test")
    assert "name" in refused.value.details


def test_the_default_authority_is_the_public_cloud_one(emulator_org, register):
    environment = register(emulator_org, authority=None)
    assert environment.authority == f"https://login.microsoftonline.com/{emulator_org.tenant_id}"


def test_registration_queues_the_first_health_check(emulator_org, register):
    environment = register(emulator_org, check_health=True)
    job = Job.objects.get(environment=environment)
    assert (job.kind, job.status) == (JobKind.HEALTH_CHECK, JobStatus.PENDING)
    assert only_event("job.enqueued", object_id=str(job.pk)).related_id == str(environment.pk)


# --- updates ------------------------------------------------------------------------------------------------


def test_update_audits_only_what_changed(emulator_org, register, admin_context):
    environment = register(emulator_org, description="old")
    services.environment_update(environment=environment, description="old", kind="test", context=admin_context)
    assert events("environment.updated") == []
    services.environment_update(environment=environment, description="new", kind="production", context=admin_context)
    event = only_event("environment.updated", object_id=str(environment.pk))
    assert event.before == {"description": "old", "kind": "test"}
    assert event.after == {"description": "new", "kind": "production"}


def test_a_new_url_resets_health_and_queues_a_check(emulator_org, emulator, register, admin_context):
    environment = register(emulator_org)
    services.environment_check_health(environment=environment, context=admin_context)
    other = emulator.new_org()
    updated = services.environment_update(environment=environment, url=other.url, context=admin_context)
    assert updated.health_status == HealthStatus.UNKNOWN
    assert Job.objects.filter(environment=environment, kind=JobKind.HEALTH_CHECK, status="pending").count() == 1
    # Asking again while one waits returns the waiting one.
    again = services.environment_request_health_check(environment=environment, context=admin_context)
    assert Job.objects.filter(environment=environment, kind=JobKind.HEALTH_CHECK).count() == 1
    assert again.status == "pending"


def test_update_refuses_a_url_outside_the_policy(emulator_org, register, admin_context):
    environment = register(emulator_org)
    with pytest.raises(ValidationFailed) as refused:
        services.environment_update(environment=environment, url="https://169.254.169.254/", context=admin_context)
    assert "url" in refused.value.details
    environment.refresh_from_db()
    assert environment.url == emulator_org.url
